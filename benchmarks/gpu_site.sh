#!/usr/bin/env bash
# Build .site/: the project's pinned training stack as unpacked wheels, for the GPU machine, which has
# no package index. Run from the repo root; on the GPU machine use PYTHONPATH=$PWD/.site:$PWD/src.
#
# The GPU machine (checked 2026-11-28) has Python 3.12, torch 2.11 cu130, triton 3.6, accelerate 1.15,
# numpy, pandas, pyarrow, xxhash, ... and transformers 5.17 with huggingface_hub 1.33, tokenizers 0.23.2
# and peft 0.21.0; it has no trl, bitsandbytes, liger-kernel, datasets, dill, multiprocess, pydantic,
# tenacity or boto3 (shared/gpu/device-pip-list.txt wrongly lists some of these). .site/ brings:
#   - transformers, tokenizers, huggingface_hub, peft at the constraints/ci.txt pins (they shadow the
#     machine's: transformers 4.57 accepts only tokenizers <= 0.23.0 and huggingface_hub < 1.0);
#   - trl, bitsandbytes, datasets (+ dill, multiprocess, fsspec <= 2026.6.0 as datasets asks; the
#     machine's xxhash 4.0.1 serves);
#   - liger-kernel 0.8.4, not in ci.txt: 0.8.5 raises ImportError below transformers 5.0;
#   - pydantic (+ core, annotated-types, typing-inspection), tenacity, boto3/botocore/s3transfer/jmespath.
# .site/ must stay under 60 MiB (it travels with the repo in a 64 MiB limit), so it is pruned:
#   - bitsandbytes keeps only its CPU library and libbitsandbytes_cuda$BNB_CUDA.so (torch cu130);
#   - transformers keeps the model families in KEEP_MODELS (and those they import) whole, less their
#     modular_*.py (code-generation sources) and TF/Flax files. Of the other ~360 families only an
#     __init__.py stub stays, where AutoTokenizer/AutoProcessor may import it by name; so AutoConfig,
#     AutoModel or a liger-kernel patch for a family not kept fails (ModuleNotFoundError/AttributeError).
#     Add the family to KEEP_MODELS when a run needs it;
#   - botocore/boto3 keep the service models of BOTO_SERVICES, their JSON gzipped (botocore reads both);
#   - opt-in parts nothing here loads: trl's experimental trainers, liger-kernel's Ascend backend, tests,
#     the console-script packages (transformers/commands, huggingface_hub/cli, trl/cli);
#   - shared libraries lose their symbol tables (strip --strip-unneeded), when `strip` exists.
# dist-info folders stay, RECORD rewritten to what is left: transformers and trl read versions and
# module owners through importlib.metadata.
#
# Env overrides: PY (the python running pip, default python3), PYVER (target, default 3.12),
# SITE (default .site), WHL (default .whl), BNB_CUDA (default 130).
set -euo pipefail

cd "$(dirname "$0")/.."

PY=${PY:-python3}
PYVER=${PYVER:-3.12}
SITE=${SITE:-.site}
WHL=${WHL:-.whl}
BNB_CUDA=${BNB_CUDA:-130}
CONSTRAINTS=constraints/ci.txt

# Pinned in constraints/ci.txt: the version is read from there.
PINNED=(
  transformers tokenizers huggingface_hub
  peft trl bitsandbytes
  datasets dill multiprocess fsspec
  pydantic pydantic_core annotated-types typing-inspection
  tenacity
  boto3 botocore s3transfer jmespath
)
# Not in constraints/ci.txt (the gpu extra, which CI doesn't install): liger-kernel >= 0.8.5 needs
# transformers >= 5; nvidia-cudnn-frontend brings cuDNN's varlen attention ops (torch.ops.cudnn.sdpa_*).
EXTRA=(liger-kernel==0.8.4 nvidia-cudnn-frontend==1.32.0)

# Model families kept whole in transformers: src/bedrock_ft/architectures, the tests, the GPU bench
# (Mistral); and those imported at module level elsewhere: bloom (peft.utils.constants), llava
# (liger_kernel.transformers.monkey_patch, through its output classes), bert (transformers.pipelines).
KEEP_MODELS=(
  auto llama mllama mistral mixtral qwen2 qwen2_moe qwen2_vl qwen2_5_vl qwen3 qwen3_moe
  gpt_oss gpt_bigcode gpt2 gpt_neox t5 phi3 gemma gemma2
  bloom llava bert
)
BOTO_SERVICES=(bedrock bedrock-runtime s3 sts sso sso-oidc iam)

pin() {  # pin NAME -> NAME==VERSION from constraints/ci.txt (names compared PEP 503-normalised)
  "$PY" - "$1" "$CONSTRAINTS" <<'PIN'
import re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
name, path = sys.argv[1], sys.argv[2]
for line in open(path):
    line = line.split("#", 1)[0].strip()
    if "==" in line and norm(line.split("==", 1)[0]) == norm(name):
        print(line)
        sys.exit(0)
sys.exit(f"{name} is not pinned in {path}")
PIN
}

SPECS=()
for name in "${PINNED[@]}"; do SPECS+=("$(pin "$name")"); done
SPECS+=("${EXTRA[@]}")

echo "== downloading into $WHL (python $PYVER, manylinux x86_64)"
mkdir -p "$WHL"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHL" "${SPECS[@]}" 2> >(grep -v "^WARNING: Location 'file:" >&2)

# The wheel for NAME==VERSION: .whl/ may hold other versions from earlier runs, so pick by name+version.
wheel_for() {
  local name=${1%%==*} ver=${1#*==} tag=cp${PYVER/./} w base wname rest
  name=$(echo "$name" | tr '[:upper:]-.' '[:lower:]__')
  for w in "$WHL"/*.whl; do
    base=$(basename "$w")
    wname=$(echo "${base%%-*}" | tr '[:upper:]-.' '[:lower:]__')
    rest=${base#*-}
    [[ $wname == "$name" && ${rest%%-*} == "$ver" ]] || continue
    # Binary wheels must match the target interpreter; pure ones say py3 or pyXY.
    case $base in
      *-py3-none-*|*-py2.py3-none-*|*-py"${PYVER/./}"-none-*|*-"$tag"-"$tag"-*|*-abi3-*) echo "$w"; return 0 ;;
    esac
  done
  echo "no wheel for $1 (python $PYVER) in $WHL" >&2
  return 1
}

echo "== unpacking into $SITE"
rm -rf "$SITE"
mkdir -p "$SITE"
for spec in "${SPECS[@]}"; do
  w=$(wheel_for "$spec")
  case $spec in
    bitsandbytes==*)
      unzip -qo "$w" -d "$SITE" -x 'bitsandbytes/libbitsandbytes_*'
      unzip -qo "$w" -d "$SITE" bitsandbytes/libbitsandbytes_cpu.so "bitsandbytes/libbitsandbytes_cuda${BNB_CUDA}.so"
      ;;
    *) unzip -qo "$w" -d "$SITE" ;;
  esac
done

echo "== pruning"
"$PY" - "$SITE" "${KEEP_MODELS[*]}" "${BOTO_SERVICES[*]}" <<'PRUNE'
import ast, gzip, re, shutil, sys
from pathlib import Path

site, keep, services = Path(sys.argv[1]), set(sys.argv[2].split()), set(sys.argv[3].split())
tf = site / "transformers"
models = tf / "models"
families = {p.name for p in models.iterdir() if p.is_dir() and p.name != "__pycache__"}
missing = keep - families
if missing:
    sys.exit(f"KEEP_MODELS names no transformers model: {sorted(missing)}")

# Close KEEP_MODELS over the model-to-model imports of the kept files.
imp = re.compile(r"^\s*from\s+(?:\.\.|transformers\.models\.)([a-z0-9_]+)[\s.]", re.M)
todo = list(keep)
while todo:
    fam = todo.pop()
    for f in (models / fam).rglob("*.py"):
        if f.name.startswith("modular_"):
            continue
        for dep in imp.findall(f.read_text(encoding="utf-8")):
            if dep in families and dep not in keep:
                keep.add(dep)
                todo.append(dep)

# A family not kept goes whole, except that its __init__.py stays as a stub where the auto classes may
# import it: AutoTokenizer/AutoProcessor/... find a class by name by importing, in mapping order, every
# model module whose entry lists that name, and catch only AttributeError. So a family whose
# tokenizer/processor entries name a class of a kept family (LlamaTokenizerFast, GPT2Tokenizer, ...)
# keeps a stub. Its config goes: AutoConfig for a family not kept fails, as it should.
provided = set()
for fam in keep:
    for f in (models / fam).rglob("*.py"):
        provided |= set(re.findall(r"^class (\w+)", f.read_text(encoding="utf-8"), re.M))
auto = models / "auto"


def literal_pairs(path, var):
    """("key", {string constants of the value}) of the OrderedDict([...]) literal(s) assigned to var."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if not (isinstance(target, ast.Name) and target.id == var and isinstance(value, ast.Call) and value.args
                and isinstance(value.args[0], ast.List)):
            continue
        for el in value.args[0].elts:
            if isinstance(el, ast.Tuple) and len(el.elts) == 2 and isinstance(el.elts[0], ast.Constant):
                yield el.elts[0].value, {c.value for c in ast.walk(el.elts[1])
                                         if isinstance(c, ast.Constant) and isinstance(c.value, str)}


# configuration_auto.model_type_to_module_name, without importing transformers.
special = {k: v.pop() for k, v in literal_pairs(auto / "configuration_auto.py", "SPECIAL_MODEL_TYPE_TO_MODULE_NAME")}
stubs = set()
for name, var in (("tokenization_auto", "TOKENIZER"), ("processing_auto", "PROCESSOR"),
                  ("image_processing_auto", "IMAGE_PROCESSOR"), ("feature_extraction_auto", "FEATURE_EXTRACTOR"),
                  ("video_processing_auto", "VIDEO_PROCESSOR")):
    pairs = list(literal_pairs(auto / f"{name}.py", f"{var}_MAPPING_NAMES"))
    if not pairs:
        sys.exit(f"found no {var}_MAPPING_NAMES in transformers/models/auto/{name}.py")
    for model_type, names in pairs:
        if names & provided:
            stubs.add(special.get(model_type, model_type).replace("-", "_"))

dropped = 0
for fam in sorted(families):
    d = models / fam
    for f in d.rglob("*"):
        if f.is_file():
            n = f.name
            gone = fam not in keep or n.startswith(("modular_", "modeling_tf_", "modeling_flax_"))
            if fam == "deprecated":  # a folder of families, each kept as a stub
                gone = n != "__init__.py"
            elif fam not in keep and fam in stubs and f.parent == d and n == "__init__.py":
                gone = False
            if gone:
                f.unlink()
                dropped += 1
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(d.iterdir()):
        d.rmdir()
stubs &= families - keep
print(f"transformers: {len(keep)} model families whole ({' '.join(sorted(keep))}); "
      f"{len(stubs)} as __init__.py stubs; {len(families) - len(keep) - len(stubs)} removed; "
      f"{dropped} files dropped")

# Kernel sources of families not kept; TF/Flax-only modules (the machine has no TensorFlow, and nothing
# here asks for Flax models); the console-script packages (no scripts are installed from .site);
# dill's and multiprocess's test suites; trl's opt-in experimental trainers (not trl.experimental.utils,
# which trl.models.utils imports); liger-kernel's Ascend NPU backend (backends are found by listing).
for d in (tf / "kernels").iterdir():
    if d.is_dir() and d.name not in keep:
        shutil.rmtree(d)
for f in list(tf.rglob("*.py")):
    if "models" not in f.relative_to(tf).parts and not f.name.startswith("dummy_") and re.search(r"(^|_)(tf|flax)(_|\.py$)", f.name):
        f.unlink()
for d in ("transformers/commands", "huggingface_hub/cli", "trl/cli", "dill/tests", "multiprocess/tests",
          "liger_kernel/ops/backends/_ascend"):
    shutil.rmtree(site / d)
for p in (site / "trl" / "experimental").iterdir():  # trl.models.utils imports trl.experimental.utils
    if p.name not in ("__init__.py", "utils.py"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()

for data in (site / "botocore" / "data", site / "boto3" / "data"):
    for d in data.iterdir():
        if d.is_dir() and d.name not in services:
            shutil.rmtree(d)
    # botocore's loader reads X.json or X.json.gz alike (endpoints.json alone is 1.2 MB).
    for f in list(data.rglob("*.json")):
        with open(f, "rb") as src, gzip.GzipFile(f.with_suffix(".json.gz"), "wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
print(f"botocore/boto3: service models of {' '.join(sorted(services))}")

# cudnn-frontend: its compiled module and the pure-Python graph API with the SDPA torch ops
# (cudnn.sdpa.fwd.torch_op and what it imports); not its C++ headers, nor its CuTe DSL kernels (GEMM,
# MoE, sparse and linear attention, Blackwell-only SDPA kernels), which need nvidia-cutlass-dsl anyway.
shutil.rmtree(site / "include")
cudnn = site / "cudnn"
keep_cudnn = ("engines", "frost", "sdpa", "sdpa/fwd", "sdpa/fwd/kernels", "sdpa/bwd")
for f in list(cudnn.rglob("*")):
    if f.is_file():
        folder = f.parent.relative_to(cudnn).as_posix()
        top_level = folder == "." and (f.suffix == ".py" or f.name.startswith("_compiled_module"))
        if not (top_level or (folder in keep_cudnn and f.suffix == ".py")):
            f.unlink()
for sub in sorted((p for p in cudnn.rglob("*") if p.is_dir()), reverse=True):
    if not any(sub.iterdir()):
        sub.rmdir()

for d in list(site.glob("*.data")):  # wheel scripts (dill's undill, jmespath's jp.py): never on PATH here
    shutil.rmtree(d)
for d in list(site.rglob("__pycache__")):
    shutil.rmtree(d)
PRUNE

if command -v strip >/dev/null; then
  find "$SITE" -name '*.so' -print0 | xargs -0 strip --strip-unneeded
else
  echo "strip not found: shared libraries keep their symbol tables" >&2
fi

# RECORD lists what is left (importlib.metadata maps modules to distributions through it).
"$PY" - "$SITE" <<'RECORD'
import csv, io, sys
from pathlib import Path

site = Path(sys.argv[1])
for info in site.glob("*.dist-info"):
    record = info / "RECORD"
    rows = [r for r in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))) if r]
    own = f"{info.name}/RECORD"
    tops = {r[0].split("/", 1)[0] for r in rows if r[0].split("/", 1)[0] != info.name}
    kept = [r for r in rows if (site / r[0]).is_file() and r[0] != own]
    listed = {r[0] for r in kept}
    for top in sorted(tops):
        p = site / top
        files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
        kept += [[f.relative_to(site).as_posix(), "", ""] for f in files
                 if f.relative_to(site).as_posix() not in listed]
    kept.append([own, "", ""])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    record.write_text(out.getvalue(), encoding="utf-8")
RECORD

echo "== versions in $SITE"
for d in "$SITE"/*.dist-info; do basename "$d" .dist-info; done | sed 's/-/==/' | sort -f
du -sh "$SITE"
size=$(du -sm "$SITE" | cut -f1)
if (( size >= 60 )); then
  echo "$SITE is ${size} MiB: over the 60 MiB budget" >&2
  exit 1
fi
