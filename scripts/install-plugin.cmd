@echo off
rem Helm 4 runs hook commands without a shell and expands ${HELM_PLUGIN_DIR} only in the
rem command path, so it cannot start install-plugin.ps1 itself. This launcher finds
rem PowerShell (7 first, then Windows PowerShell 5.1) and runs the script next to it.
setlocal
set "PS_EXE=powershell"
where pwsh >nul 2>nul && set "PS_EXE=pwsh"
"%PS_EXE%" -NoProfile -ExecutionPolicy Bypass -File "%~dp0install-plugin.ps1" %*
exit /b %ERRORLEVEL%
