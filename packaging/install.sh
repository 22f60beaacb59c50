#!/bin/sh
# Installs Latchkey from the offline bundle: checks the bundle against SHA256SUMS, then
# puts the binary in /usr/local/bin, the unit in /etc/systemd/system, and the example
# configuration in /etc/latchkey/latchkey.toml unless one exists. Safe to run again (an
# upgrade replaces the binary and unit, never the configuration). Needs no network.
# DESTDIR=/some/root installs into another root and skips systemctl (for packaging tests).
set -eu
cd "$(dirname "$0")"
root="${DESTDIR:-}"

sha256sum --quiet -c SHA256SUMS

install -D -m 0755 latchkey "$root/usr/local/bin/latchkey"
mkdir -p "$root/etc/systemd/system"
sed 's|/usr/bin/latchkey|/usr/local/bin/latchkey|' latchkey.service > "$root/etc/systemd/system/latchkey.service"
chmod 0644 "$root/etc/systemd/system/latchkey.service"
if [ ! -e "$root/etc/latchkey/latchkey.toml" ]; then
  install -D -m 0640 latchkey.toml "$root/etc/latchkey/latchkey.toml"
  echo "installed /etc/latchkey/latchkey.toml (every setting is optional; see the comments)"
else
  echo "kept the existing /etc/latchkey/latchkey.toml"
fi
mkdir -p "$root/usr/local/share/doc/latchkey"
cp -r README.md docs "$root/usr/local/share/doc/latchkey/"

if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable latchkey.service
  systemctl restart latchkey.service
  echo "latchkey is running: journalctl -u latchkey shows the first-run setup link"
else
  echo "installed; start it with: latchkey serve --config /etc/latchkey/latchkey.toml"
fi
