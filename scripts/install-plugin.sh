#!/usr/bin/env bash
# Builds helm-egress's private Python environment inside the plugin directory:
#   $HELM_PLUGIN_DIR/.plugin-venv, with helm-egress pip-installed from $HELM_PLUGIN_DIR itself.
#
# Helm 4 runs this as the plugin's install and update hook, with HELM_PLUGIN_DIR set. You
# can also run it by hand: without HELM_PLUGIN_DIR, it uses the directory above this script.
# Running it again reuses a healthy venv and reinstalls helm-egress from the current
# sources; pip always rebuilds a local directory, even at the same version number.
#
# Environment:
#   HELM_EGRESS_PYTHON  Python >= 3.11 to build the venv with (default: first suitable of
#                       python3, python3.14 ... python3.11, python on PATH)
#   PIP_* variables     passed through to pip (index URL, proxy, certificates, ...)
set -euo pipefail

readonly MIN_PYTHON="3.11"

info() { printf 'helm-egress: %s\n' "$*"; }
die() {
    printf 'helm-egress: error: %s\n' "$*" >&2
    exit 1
}

# Exit 0 when "$1" runs and is at least MIN_PYTHON.
python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    if [[ -n "${HELM_EGRESS_PYTHON:-}" ]]; then
        command -v -- "$HELM_EGRESS_PYTHON" >/dev/null 2>&1 ||
            die "HELM_EGRESS_PYTHON='$HELM_EGRESS_PYTHON' is not an executable"
        python_ok "$HELM_EGRESS_PYTHON" ||
            die "HELM_EGRESS_PYTHON='$HELM_EGRESS_PYTHON' is not Python >= $MIN_PYTHON"
        printf '%s\n' "$HELM_EGRESS_PYTHON"
        return
    fi
    local candidate
    for candidate in python3 python3.14 python3.13 python3.12 python3.11 python; do
        if command -v -- "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v -- "$candidate"
            return
        fi
    done
    die "no Python >= $MIN_PYTHON found on PATH; install one, or set HELM_EGRESS_PYTHON=/path/to/python3"
}

plugin_dir="${HELM_PLUGIN_DIR:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)}"
[[ -f "$plugin_dir/pyproject.toml" ]] ||
    die "$plugin_dir has no pyproject.toml; is HELM_PLUGIN_DIR the helm-egress plugin directory?"
# A plugin folder that is a git checkout is one `helm plugin update` would `git pull` and then
# `git clean -x -d -f -f` (Helm 4.1.4): every untracked and ignored file in it -- notes, .venv,
# .helm-bin -- deleted. Helm installs a local folder as a link to it, so that checkout is the
# user's own. Refuse, and take back the link Helm just made (only a link, never a folder),
# so there is no installed plugin left for an update to run in.
if [[ -e "$plugin_dir/.git" ]]; then
    printf 'helm-egress: error: %s is a git checkout. `helm plugin update` runs `git clean -x -d -f -f` in a plugin that is a checkout, deleting every untracked file in it. Install a packaged archive or a copy instead:\n  python3 scripts/package_plugin.py && helm plugin install dist/<plugin>-<version>.tgz   (Helm 4; add --verify=false, or keep the .prov)\n  or: cp -r <checkout> ~/helm-egress-copy && rm -rf ~/helm-egress-copy/.git && helm plugin install ~/helm-egress-copy\n' "$plugin_dir" >&2
    if [[ -n "${HELM_PLUGIN_DIR:-}" && -L "$HELM_PLUGIN_DIR" ]]; then
        rm -- "$HELM_PLUGIN_DIR" && printf 'helm-egress: removed the plugin link %s (your checkout is untouched)\n' "$HELM_PLUGIN_DIR" >&2
    fi
    exit 1
fi
venv="$plugin_dir/.plugin-venv"
venv_python="$venv/bin/python"

# A venv whose interpreter was removed or upgraded away, or that lacks pip, cannot be
# repaired in place. Rebuild it; otherwise keep it, so an update only reinstalls the package.
if [[ -x "$venv_python" ]] && python_ok "$venv_python" && "$venv_python" -m pip --version >/dev/null 2>&1; then
    info "reusing $venv"
else
    python="$(find_python)"
    info "creating $venv with $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
    "$python" -m venv --clear "$venv" ||
        die "could not create $venv; on Debian/Ubuntu install the python3-venv package, or set HELM_EGRESS_PYTHON"
fi

info "installing helm-egress from $plugin_dir (needs access to a package index)"
"$venv_python" -m pip install --disable-pip-version-check --no-input "$plugin_dir" ||
    die "pip could not install helm-egress into $venv (see pip's output above); fix the cause and run $plugin_dir/scripts/install-plugin.sh again"

[[ -x "$venv/bin/helm-egress" ]] ||
    die "pip succeeded but $venv/bin/helm-egress is missing; the package must declare the console script 'helm-egress'"
"$venv/bin/helm-egress" --version >/dev/null ||
    die "$venv/bin/helm-egress does not run; see the error above"

info "ready: $("$venv/bin/helm-egress" --version)"
