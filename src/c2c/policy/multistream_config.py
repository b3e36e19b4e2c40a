"""Sizes of the multi-stream backbone of App. C.3 (``multistream.py``): the stream names and :class:`MultiStreamConfig`.

The VLM stream is PaliGemma's Gemma (its config fixes layers, heads, head_dim, RoPE and norms of every stream); a
preset sizes only the proprio and action streams (:func:`check_streams`). A saved backbone config carries
``model_type`` :data:`MODEL_TYPE` (:func:`is_multistream_config`).
"""

from __future__ import annotations

from typing import Any

from transformers import PaliGemmaConfig

from c2c.errors import ConfigError

STREAMS = ("vlm", "proprio", "action")  # App. C.3's three streams, in sequence order
EXPERT_STREAMS = ("proprio", "action")  # the streams a preset sizes (the VLM stream is PaliGemma's Gemma)
OUTPUT_STREAM = "action"  # the LM head reads this stream
MODEL_TYPE = "c2c-multistream"  # "model_type" of a saved multi-stream backbone config


class MultiStreamConfig:
    """Sizes of a multi-stream backbone: PaliGemma's (vision tower, VLM stream, head space), the proprio and action
    streams' widths, and the action ids [action_start, action_start + action_rows) of the action stream's table."""

    def __init__(self, paligemma: PaliGemmaConfig | dict[str, Any], streams: dict[str, dict[str, int]],
                 action_start: int, action_rows: int) -> None:
        self.paligemma = paligemma if isinstance(paligemma, PaliGemmaConfig) else PaliGemmaConfig.from_dict(paligemma)
        self.streams = check_streams(streams)
        self.action_start = int(action_start)
        self.action_rows = int(action_rows)

    @property
    def vision_config(self) -> Any:
        return self.paligemma.vision_config

    @property
    def text_config(self) -> Any:
        """The VLM stream's GemmaConfig (also fixes layers, heads, head_dim, RoPE and norms of every stream)."""
        return self.paligemma.text_config

    def get_text_config(self, *args: Any, **kwargs: Any) -> Any:
        return self.text_config

    def stream_sizes(self) -> dict[str, tuple[int, int]]:
        """{stream: (hidden_size, intermediate_size)} for all three streams."""
        text = self.text_config
        sizes = {"vlm": (int(text.hidden_size), int(text.intermediate_size))}
        sizes.update({name: (spec["hidden_size"], spec["intermediate_size"]) for name, spec in self.streams.items()})
        return sizes

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, "paligemma": self.paligemma.to_dict(), "streams": self.streams,
                "action_start": self.action_start, "action_rows": self.action_rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiStreamConfig:
        if data.get("model_type") != MODEL_TYPE:
            raise ConfigError(f"backbone config: model_type is {data.get('model_type')!r}, expected {MODEL_TYPE!r}")
        return cls(data["paligemma"], data["streams"], data["action_start"], data["action_rows"])


def is_multistream_config(data: dict[str, Any]) -> bool:
    """Whether a saved backbone config describes a multi-stream backbone (else it is a PaliGemma's)."""
    return data.get("model_type") == MODEL_TYPE


def check_streams(streams: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The proprio and action streams' sizes: exactly those two, positive hidden_size and intermediate_size."""
    if set(streams) != set(EXPERT_STREAMS):
        raise ConfigError(f"streams must size exactly {list(EXPERT_STREAMS)}, got {sorted(streams)}")
    checked = {}
    for name in EXPERT_STREAMS:
        spec = dict(streams[name])
        if set(spec) != {"hidden_size", "intermediate_size"}:
            raise ConfigError(f"streams[{name!r}] must give hidden_size and intermediate_size, got {sorted(spec)}")
        for key, value in spec.items():
            if int(value) < 1:
                raise ConfigError(f"streams[{name!r}][{key!r}] must be >= 1, got {value}")
        checked[name] = {key: int(value) for key, value in spec.items()}
    return checked
