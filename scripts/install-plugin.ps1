# Builds helm-egress's private Python environment inside the plugin directory:
#   $env:HELM_PLUGIN_DIR\.plugin-venv, with helm-egress pip-installed from the plugin directory.
#
# The Windows twin of install-plugin.sh. Helm 4 reaches it through install-plugin.cmd,
# because Helm runs hooks without a shell and cannot start a .ps1 directly. Works with
# Windows PowerShell 5.1 and PowerShell 7.
#
# Environment:
#   HELM_EGRESS_PYTHON  Python >= 3.11 to build the venv with (default: the first suitable
#                       of `py -3`, python3, python on PATH)
#   PIP_* variables     passed through to pip (index URL, proxy, certificates, ...)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$MinPython = '3.11'
$VersionCheck = 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'

function Write-Info([string] $Message) { Write-Host "helm-egress: $Message" }

function Fail([string] $Message) {
    [Console]::Error.WriteLine("helm-egress: error: $Message")
    exit 1
}

# Runs a command line (executable plus leading arguments) with more arguments and reports
# whether it exited 0. Output is discarded.
function Test-Command([string[]] $Command, [string[]] $Arguments) {
    try {
        $exe = $Command[0]
        $rest = @($Command | Select-Object -Skip 1) + $Arguments
        & $exe @rest *> $null
        return ($LASTEXITCODE -eq 0)
    } catch {
        return $false
    }
}

function Find-Python {
    if ($env:HELM_EGRESS_PYTHON) {
        if (-not (Get-Command $env:HELM_EGRESS_PYTHON -ErrorAction SilentlyContinue)) {
            Fail "HELM_EGRESS_PYTHON='$env:HELM_EGRESS_PYTHON' is not an executable"
        }
        if (-not (Test-Command @($env:HELM_EGRESS_PYTHON) @('-c', $VersionCheck))) {
            Fail "HELM_EGRESS_PYTHON='$env:HELM_EGRESS_PYTHON' is not Python >= $MinPython"
        }
        return ,@($env:HELM_EGRESS_PYTHON)
    }
    # The py launcher is the usual way to reach python.org installs; python.exe on PATH
    # may be the Microsoft Store stub, which the version check rejects.
    foreach ($candidate in @(@('py', '-3'), @('python3'), @('python'))) {
        if ((Get-Command $candidate[0] -ErrorAction SilentlyContinue) -and
            (Test-Command $candidate @('-c', $VersionCheck))) {
            return ,$candidate
        }
    }
    Fail "no Python >= $MinPython found; install one, or set HELM_EGRESS_PYTHON to python.exe"
}

$PluginDir = $env:HELM_PLUGIN_DIR
if (-not $PluginDir) { $PluginDir = Split-Path -Parent $PSScriptRoot }
if (-not (Test-Path -LiteralPath (Join-Path $PluginDir 'pyproject.toml'))) {
    Fail "$PluginDir has no pyproject.toml; is HELM_PLUGIN_DIR the helm-egress plugin directory?"
}
# A checkout would be `git clean -x -d -f -f`-ed by `helm plugin update` (see install-plugin.sh).
if (Test-Path -LiteralPath (Join-Path $PluginDir '.git')) {
    Fail "$PluginDir is a git checkout; helm plugin update would run git clean -x -d -f -f in it and delete every untracked file. Install a packaged archive (python scripts/package_plugin.py) or a copy instead."
}
$Venv = Join-Path $PluginDir '.plugin-venv'
$VenvPython = Join-Path $Venv 'Scripts\python.exe'
$Exe = Join-Path $Venv 'Scripts\helm-egress.exe'

# A venv whose interpreter was removed or upgraded away cannot be repaired in place:
# rebuild it. Otherwise keep it, so an update only reinstalls the package.
if ((Test-Path -LiteralPath $VenvPython) -and
    (Test-Command @($VenvPython) @('-c', $VersionCheck)) -and
    (Test-Command @($VenvPython) @('-m', 'pip', '--version'))) {
    Write-Info "reusing $Venv"
} else {
    $Python = Find-Python
    Write-Info "creating $Venv with $($Python -join ' ')"
    $exe = $Python[0]
    $pyArgs = @($Python | Select-Object -Skip 1) + @('-m', 'venv', '--clear', $Venv)
    & $exe @pyArgs
    if ($LASTEXITCODE -ne 0) { Fail "could not create $Venv; set HELM_EGRESS_PYTHON to a full Python >= $MinPython" }
}

Write-Info "installing helm-egress from $PluginDir (needs access to a package index)"
& $VenvPython -m pip install --disable-pip-version-check --no-input $PluginDir
if ($LASTEXITCODE -ne 0) {
    Fail "pip could not install helm-egress into $Venv (see pip's output above); fix the cause and run $PluginDir\scripts\install-plugin.cmd again"
}

if (-not (Test-Path -LiteralPath $Exe)) {
    Fail "pip succeeded but $Exe is missing; the package must declare the console script 'helm-egress'"
}
$Version = & $Exe --version
if ($LASTEXITCODE -ne 0) { Fail "$Exe does not run; see the error above" }
Write-Info "ready: $Version"
