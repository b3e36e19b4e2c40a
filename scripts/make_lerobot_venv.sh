#!/usr/bin/env bash
# Builds a throwaway virtual environment with LeRobot 0.4.4 (never a dependency of this project) to check our
# LeRobot v3.0 datasets against LeRobot's own LeRobotDataset. Usage: scripts/make_lerobot_venv.sh DIR
set -euo pipefail
venv=${1:-.venv-lerobot}
python=${PYTHON:-python3}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import lerobot, torchcodec" 2>/dev/null; then
  echo "$venv already has lerobot"; exit 0
fi
"$python" -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install --quiet --upgrade pip
"$pip" install --quiet torch==2.13.0
"$pip" install --quiet --no-deps torchvision==0.28.0 lerobot==0.4.4
constraints=$(mktemp)
printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$constraints"
"$pip" install --quiet -c "$constraints" "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" \
  "jsonlines>=4,<5" "draccus==0.10.0" "einops>=0.8,<0.9" "imageio[ffmpeg]>=2.34,<3" "packaging>=24.2,<26" \
  "deepdiff>=7,<9" "termcolor>=2.4,<4" "accelerate>=1.10,<2" pandas pyarrow pillow
rm -f "$constraints"
# LeRobot decodes videos with torchcodec, which needs FFmpeg's shared libraries.
libs="libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $libs >/dev/null
else
  echo "if video checks fail, install FFmpeg's libraries: sudo apt-get install -y $libs" >&2
fi
"$pip" install --quiet --no-deps torchcodec==0.13.0
echo "LeRobot environment ready in $venv"
