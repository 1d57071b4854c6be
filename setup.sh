#!/usr/bin/env sh
# Installs what this project needs on a Debian machine with Node and npm: Deno (from the npm
# registry) and, on machines without a GPU Vulkan driver, Mesa's software Vulkan driver.
# Safe to run again: it only installs what is missing.
set -eu
DENO_VERSION=2.9.6
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v deno >/dev/null 2>&1 || ! deno --version | head -1 | grep -q "deno $DENO_VERSION"; then
  echo "setup: installing deno $DENO_VERSION from npm"
  $SUDO npm install -g --no-fund --no-audit "deno@$DENO_VERSION" >/dev/null
fi

has_vulkan_driver() {
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
    ls "$d"/*.json >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! has_vulkan_driver; then
  echo "setup: no Vulkan driver found; installing Mesa's software driver (mesa-vulkan-drivers)"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
echo "setup: $(deno --version | head -1); Vulkan driver present"
