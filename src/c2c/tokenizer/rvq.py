"""Residual vector quantization with the paper's objective (Appendix B.4, Eq. 17-19).

Each level r quantizes the residual e^r left by the levels before it with its own codebook of ``codebook_size``
vectors. The losses are exactly the paper's, averaged over levels:

- commitment (Eq. 17): ||e^r - sg(q^r)||^2, pulls the encoder towards its codes (weight beta = 0.25 in Eq. 19);
- codebook (Eq. 18): ||sg(e^r) - q^r||^2, pulls the selected codes towards the encoder outputs (weight 1).

The codebooks are therefore learned by gradient descent. ``vector-quantize-pytorch`` folds these two terms into one
loss with a single weight when its codebook is learnable (and drops the codebook term when it uses EMA updates),
so it cannot express Eq. 19 with beta = 0.25; that library backs the ``ema`` option instead (see
:mod:`c2c.tokenizer.codec`).

Keeping 4096-entry codebooks alive:
- k-means initialisation of every level from a large sample of encoder outputs (:meth:`init_from_data`);
- dead-code replacement: a code whose moving-average usage falls below ``dead_code_threshold`` selections per
  batch is moved onto a random residual of the current batch (:meth:`replace_dead_codes`).

Example::

    rvq = ResidualVectorQuantizer(dim=64, num_levels=3, codebook_size=4096)
    quantized, codes, losses = rvq(latents)        # (B, N, 64), (B, N, 3), {"commitment", "codebook"}
    torch.equal(rvq.decode_codes(codes), quantized)  # in eval mode
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _nearest(x: torch.Tensor, codebook: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """Index of the nearest codebook row for every row of x: (M, D), (K, D) -> (M,)."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin. Rows go in blocks so the
    # (block, K) score matrix stays in cache instead of an (M, K) one in memory.
    norms = codebook.pow(2).sum(dim=1)  # (K,)
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], block):
        out[start:start + block] = torch.addmm(norms, x[start:start + block], codebook.t(), alpha=-2.0).argmin(dim=1)
    return out


def kmeans(x: torch.Tensor, num_clusters: int, iters: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Lloyd k-means on (M, D) points; clusters left empty keep a random point. Returns (K, D)."""
    count = x.shape[0]
    pick = torch.randint(count, (num_clusters,), generator=generator) if count < num_clusters else torch.randperm(
        count, generator=generator
    )[:num_clusters]
    centers = x[pick].clone()  # (K, D)
    for _ in range(iters):
        assign = _nearest(x, centers)  # (M,)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)  # (K, D)
        counts = torch.bincount(assign, minlength=num_clusters).to(x.dtype)  # (K,)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    if count < num_clusters:  # duplicated starting points: spread them so they can specialise later
        centers += 1e-3 * x.std() * torch.randn(centers.shape, generator=generator)
    return centers


class ResidualVectorQuantizer(nn.Module):
    """Residual VQ over the last dimension: (..., D) latents -> (..., R) codes."""

    def __init__(
        self,
        *,
        dim: int = 64,
        num_levels: int = 3,
        codebook_size: int = 4096,
        usage_decay: float = 0.99,
        dead_code_threshold: float = 1e-3,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.usage_decay = usage_decay
        self.dead_code_threshold = dead_code_threshold
        self.codebooks = nn.Parameter(torch.randn(num_levels, codebook_size, dim) * 0.1)  # (R, K, D)
        # Moving average of how often each code is selected per batch; drives dead-code replacement.
        self.register_buffer("usage", torch.ones(num_levels, codebook_size))  # (R, K)
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def init_from_data(self, latents: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """k-means initialisation of every level, each on the residuals the levels before it leave."""
        generator = torch.Generator().manual_seed(seed)
        residual = latents.reshape(-1, self.dim).float()  # (M, D)
        for level in range(self.num_levels):
            centers = kmeans(residual, self.codebook_size, iters=iters, generator=generator)
            self.codebooks.data[level] = centers
            residual = residual - centers[_nearest(residual, centers)]
        self.usage.fill_(1.0)
        self.initialized.fill_(True)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantize (..., D) latents. Returns the straight-through quantized latents, codes (..., R), losses."""
        shape = latents.shape
        x = latents.reshape(-1, self.dim).float()  # (M, D): quantization runs in fp32
        residual = x
        quantized = torch.zeros_like(x)
        codes, commitment, codebook = [], [], []
        for level in range(self.num_levels):
            book = self.codebooks[level]  # (K, D)
            with torch.no_grad():
                index = _nearest(residual, book)  # (M,)
            # (M, D), differentiable w.r.t. the codebook. index_select, not book[index]: the backward of advanced
            # indexing accumulates with atomic adds across CPU threads, so its codebook gradient changed from run
            # to run on 2 threads; index_select's (index_add) is the same on any thread count.
            selected = book.index_select(0, index)
            commitment.append(F.mse_loss(residual, selected.detach()))  # Eq. 17
            codebook.append(F.mse_loss(residual.detach(), selected))  # Eq. 18
            if self.training:
                self._track_usage(level, index)
            codes.append(index)
            quantized = quantized + selected.detach()
            residual = residual - selected.detach()
        # Straight-through estimator: forward value = the sum of codes, gradient flows to the encoder unchanged.
        out = x + (quantized - x).detach()
        losses = {
            "commitment": torch.stack(commitment).mean(),  # 1/R sum over levels (Eq. 17)
            "codebook": torch.stack(codebook).mean(),  # 1/R sum over levels (Eq. 18)
        }
        codes_out = torch.stack(codes, dim=-1).reshape(*shape[:-1], self.num_levels)  # (..., R)
        return out.reshape(shape).to(latents.dtype), codes_out, losses

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., R) codes -> (..., D) latents: the sum of the selected vector of every level."""
        if codes.shape[-1] != self.num_levels:
            raise ValueError(f"codes must end with {self.num_levels} levels, got shape {tuple(codes.shape)}")
        total = torch.zeros(*codes.shape[:-1], self.dim, device=codes.device)
        for level in range(self.num_levels):
            total = total + self.codebooks[level][codes[..., level]]
        return total

    @torch.no_grad()
    def _track_usage(self, level: int, index: torch.Tensor) -> None:
        counts = torch.bincount(index, minlength=self.codebook_size).float()  # (K,)
        self.usage[level].mul_(self.usage_decay).add_(counts, alpha=1.0 - self.usage_decay)

    @torch.no_grad()
    def replace_dead_codes(self, latents: torch.Tensor) -> int:
        """Move codes whose usage fell below the threshold onto residuals of this batch; returns how many moved."""
        residual = latents.reshape(-1, self.dim).float()
        moved = 0
        for level in range(self.num_levels):
            book = self.codebooks.data[level]
            dead = torch.nonzero(self.usage[level] < self.dead_code_threshold).squeeze(1)
            if dead.numel():
                pick = torch.randint(residual.shape[0], (dead.numel(),), device=residual.device)
                book[dead] = residual[pick] + 1e-3 * residual.std() * torch.randn_like(residual[pick])
                self.usage[level, dead] = 1.0  # give the moved codes time to be selected
                moved += int(dead.numel())
            residual = residual - book[_nearest(residual, book)]
        return moved

    @torch.no_grad()
    def usage_fraction(self, codes: torch.Tensor) -> list[float]:
        """Fraction of each level's codebook that appears in (..., R) codes."""
        flat = codes.reshape(-1, self.num_levels)
        return [float(torch.unique(flat[:, r]).numel()) / self.codebook_size for r in range(self.num_levels)]


class EMAResidualQuantizer(nn.Module):
    """Option ``quantizer="ema"``: vector-quantize-pytorch's ResidualVQ with EMA codebook updates.

    The codebooks follow an exponential moving average of the encoder outputs assigned to them instead of the
    codebook loss of Eq. 18 (reported as 0); commitment (Eq. 17) is still returned. k-means initialisation on
    the first batch and dead-code replacement are the library's.
    """

    def __init__(self, *, dim: int = 64, num_levels: int = 3, codebook_size: int = 4096, decay: float = 0.99,
                 dead_code_threshold: float = 2.0) -> None:
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.dim, self.num_levels, self.codebook_size = dim, num_levels, codebook_size
        self.rvq = ResidualVQ(dim=dim, num_quantizers=num_levels, codebook_size=codebook_size, kmeans_init=True,
                              kmeans_iters=10, decay=decay, commitment_weight=1.0,
                              threshold_ema_dead_code=dead_code_threshold)

    @property
    def codebooks(self) -> torch.Tensor:
        return self.rvq.codebooks  # (R, K, D)

    @torch.no_grad()
    def init_from_data(self, latents: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """The library initialises by k-means on the first batch it sees in training mode: show it this one."""
        was_training = self.training
        self.train()
        self.rvq(latents.reshape(1, -1, self.dim).float())
        self.train(was_training)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        shape = latents.shape
        quantized, codes, commitment = self.rvq(latents.reshape(shape[0], -1, self.dim).float())
        losses = {"commitment": commitment.mean(), "codebook": torch.zeros((), device=latents.device)}
        return quantized.reshape(shape).to(latents.dtype), codes.reshape(*shape[:-1], self.num_levels), losses

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        flat = codes.reshape(codes.shape[0], -1, self.num_levels)
        return self.rvq.get_output_from_indices(flat).reshape(*codes.shape[:-1], self.dim)

    def replace_dead_codes(self, latents: torch.Tensor) -> int:
        return 0  # the library replaces dead codes itself during the forward pass
