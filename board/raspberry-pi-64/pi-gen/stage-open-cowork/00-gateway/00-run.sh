#!/bin/bash -e
# pi-gen step (runs on the build host with ROOTFS_DIR set): install the open-cowork-gateway
# package and the first-boot step, and enable both units. The package comes from
# scripts/package; put it in files/ or point OPEN_COWORK_GATEWAY_DEB at it. pi-gen's ARCH
# (arm64 or armhf) picks the matching .deb.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
arch="${ARCH:-arm64}"

deb="${OPEN_COWORK_GATEWAY_DEB:-}"
if [ -z "$deb" ]; then
    for candidate in "$here"/files/open-cowork-gateway_*_"$arch".deb; do
        [ -e "$candidate" ] && deb="$candidate"
    done
fi
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "stage-open-cowork: no open-cowork-gateway_*_${arch}.deb in $here/files (build it with scripts/package $arch)" >&2
    exit 1
fi

install -D -m 0644 "$deb" "${ROOTFS_DIR}/tmp/open-cowork-gateway.deb"
install -D -m 0755 "$here/files/open-cowork-gateway-firstboot" "${ROOTFS_DIR}/usr/local/sbin/open-cowork-gateway-firstboot"
install -D -m 0644 "$here/files/open-cowork-gateway-firstboot.service" \
    "${ROOTFS_DIR}/etc/systemd/system/open-cowork-gateway-firstboot.service"

# In the image's chroot: policy-rc.d and the missing /run/systemd/system keep the postinst from
# starting anything; it enables the gateway, which then starts on boot (after the first-boot step).
on_chroot <<'CHROOT'
apt-get install -y --no-install-recommends /tmp/open-cowork-gateway.deb
rm -f /tmp/open-cowork-gateway.deb
systemctl enable open-cowork-gateway.service open-cowork-gateway-firstboot.service
CHROOT
