#!/usr/bin/env bash
# The README's main job. With the shipped default model: text -> image and image -> text.
# Without it (an install that strips package data): the shapes quickstart (make data, score the
# ground truth with ShapesEval).
set -euo pipefail
cd "$(dirname "$0")/.."
FT=.venv/bin/flowtok
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
$FT doctor
if .venv/bin/python -c "import flowtok.pipeline as p; raise SystemExit(0 if p.default_model_path() else 1)"; then
    $FT generate "a cat" -o "$OUT/generate"
    $FT generate --prompts docs/assets/readme_prompts.txt --grid --seed 0 -o "$OUT/readme"
    $FT caption "$OUT"/generate/00000_*.png docs/assets/emoji/*.png
else
    $FT data shapes -o "$OUT/shapes" --n 500 --size 32 --seed 0
    $FT eval shapes "$OUT/shapes"
fi
echo "demo outputs are in $OUT"
