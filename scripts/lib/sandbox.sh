# Sourced by the evidence scripts: a copy of this project to run `dvc repro` / `dvc exp run` in,
# leaving the checkout untouched.
#
#   source scripts/lib/sandbox.sh
#   sandbox ROOT DIR PROFILE NAME   # copies ROOT's tracked and untracked-but-not-ignored files
#                                   # (no models/, data/, metrics/, dvclive/, dvc.lock) to DIR,
#                                   # PROFILE expanded as DIR/params.yaml (python -m freshllm.profile
#                                   # use), git init + commit (NAME), and
#                                   # exports PATH / PYTHONPATH / DVC / HF / git identity so that
#                                   # DIR's own code runs (the venv's editable install points at ROOT);
#                                   # SANDBOX is DIR's absolute path afterwards
sandbox() {
  local root="$1" dir="$2" profile="$3" name="$4"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  SANDBOX="$dir"
  export PATH="$root/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
  export PYTHONPATH="$dir/src"
  export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-$name}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-$name@localhost}"
  export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-$name}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-$name@localhost}"
  (cd "$root" && git ls-files -co --exclude-standard -z) | while IFS= read -r -d '' f; do
    case "$f" in models/*|data/*|metrics/*|dvclive/*|dvc.lock) continue ;; esac
    [ -f "$root/$f" ] || continue
    mkdir -p "$dir/$(dirname "$f")"
    cp -p "$root/$f" "$dir/$f"
  done
  (cd "$dir" && python -m freshllm.profile use "$(basename "$profile" .yaml)" >/dev/null)   # the profile, expanded
  (cd "$dir" && { [ -d .git ] || git init -q -b main; } && git add -A && git commit -qm "$name" --allow-empty)
}
