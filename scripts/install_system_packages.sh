#!/usr/bin/env bash
# Install the radio drivers airfl can use (Debian packages) and expose SoapySDR's Python module to
# the virtualenv given as $1. Never fails the set-up: without them airfl still runs on the loopback,
# and using a hardware backend then says what to install.
set -u
venv="${1:-.venv}"
pkgs=(libiio0 libiio-utils python3-soapysdr soapysdr-tools)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing radio drivers from Debian: ${missing[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/tmp/airfl-apt.log 2>&1 \
            || echo "warning: apt-get could not install ${missing[*]} (see /tmp/airfl-apt.log); hardware backends will be unavailable"
    else
        echo "note: radio drivers not installed (${missing[*]}); run as root with apt, or install them yourself, to use real radios"
    fi
fi

# Link only SoapySDR's two files into the venv: Debian's dist-packages also holds its own numpy.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for f in /usr/lib/python3/dist-packages/SoapySDR.py /usr/lib/python3/dist-packages/_SoapySDR.cpython-311-*.so; do
    [[ -e "$f" ]] && ln -sf "$f" "$site/$(basename "$f")"
done
exit 0
