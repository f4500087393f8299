# shellcheck shell=bash
# The cached Debian 12 base root of compat-tests/vm/run. Sourced; uses
# say/die from compat-tests/lib/common.sh and the globals set by run
# ($vm_dir, $cache).
#
# The base root is everything that does not depend on the busbar tree: a
# debootstrap of bookworm with packages.txt, configured to boot under qemu
# (fstab, machine-id, a uid 1000 user, noisy timers masked), with its kernel
# and initramfs copied out next to it. It lives in
#   $cache/base-<key>/{root/,vmlinuz,initrd.img,packages.lst}
# where <key> hashes packages.txt, this file and the mirror, so a clean clone
# on the same machine reuses it, and editing either builds a new one.

# shellcheck disable=SC2154 # vm_dir, cache: set by run
# Bump when the base root changes in a way the hash of this file misses.
BASE_FORMAT=1
BASE_SUITE=bookworm

# base_mirror: the Debian mirror the host's own apt sources use for
# $BASE_SUITE (one-line or deb822 format), or http://deb.debian.org/debian.
base_mirror() {
    local f uri='' suites='' types='' line
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        while read -r line; do
            # deb [opts] URI SUITE COMPONENTS...
            line=${line%%#*}
            [[ $line =~ ^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+) ]] || continue
            if [[ ${BASH_REMATCH[3]} == "$BASE_SUITE" ]]; then
                printf '%s\n' "${BASH_REMATCH[2]}"
                return 0
            fi
        done <"$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        # Stanzas are separated by blank lines.
        uri='' suites='' types=''
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line%%#*}
            case $line in
            Types:*) types=${line#Types:} ;;
            URIs:*) uri=${line#URIs:} ;;
            Suites:*) suites=${line#Suites:} ;;
            esac
            if [[ -z ${line//[[:space:]]/} ]]; then
                if [[ " $types " == *" deb "* && " $suites " == *" $BASE_SUITE "* && -n $uri ]]; then
                    read -r uri _ <<<"$uri"
                    printf '%s\n' "$uri"
                    return 0
                fi
                uri='' suites='' types=''
            fi
        done < <(cat "$f"; echo)
    done
    shopt -u nullglob
    printf '%s\n' http://deb.debian.org/debian
}

# base_packages: packages.txt without comments, one per line.
base_packages() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$vm_dir/packages.txt"
}

# base_key MIRROR: the cache key of the base root.
base_key() {
    {
        echo "format $BASE_FORMAT suite $BASE_SUITE mirror $1"
        base_packages
        cat "$vm_dir/lib/base.sh"
    } | sha256sum | cut -c1-16
}

# base_chroot ROOT COMMAND...: COMMAND chrooted in ROOT with /proc, /sys, /dev
# and the .deb cache mounted in a private mount namespace (gone when it
# ends, so nothing stays mounted in a tree that mkfs.ext4 -d copies).
base_chroot() {
    local root=$1
    shift
    mkdir -p "$root/var/cache/busbar-vm-debs"
    # shellcheck disable=SC2016 # expanded by the inner sh
    unshare --mount --propagation private -- sh -c '
        root=$1 debs=$2; shift 2
        mount -t proc proc "$root/proc" && mount -t sysfs sys "$root/sys" &&
        mount --rbind /dev "$root/dev" &&
        mount --bind "$debs" "$root/var/cache/busbar-vm-debs" &&
        exec chroot "$root" "$@"' base_chroot "$root" "$cache/debs" "$@"
}

# base_build MIRROR DEST: debootstrap into DEST.tmp, configure it, then
# rename it to DEST (so an interrupted build is never reused).
base_build() {
    local mirror=$1 dest=$2 tmp=$2.tmp pkgs r
    pkgs=$(base_packages | paste -sd, -)
    rm -rf "$tmp"
    mkdir -p "$tmp" "$cache/debs"
    r=$tmp/root
    say "vm: debootstrap $BASE_SUITE from $mirror into $r"
    # --cache-dir keeps the downloaded .debs, so a new package list only
    # downloads what is new.
    if ! debootstrap --variant=minbase --include="$pkgs" --cache-dir="$cache/debs" \
        "$BASE_SUITE" "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -n 30 "$tmp/debootstrap.log" >&2
        [[ -f $r/debootstrap/debootstrap.log ]] && tail -n 30 "$r/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (log: $tmp/debootstrap.log)"
    fi

    # The kernel, with a small initramfs: only what mounts the root file
    # system (MODULES=most, the default, is several times larger and takes
    # minutes to compress on a loaded machine; debootstrap would build it
    # twice).
    printf 'MODULES=list\n' >"$r/etc/initramfs-tools/conf.d/busbar-vm.conf"
    printf '%s\n' virtio_pci virtio_blk ext4 >>"$r/etc/initramfs-tools/modules"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
    mkdir -p "$cache/debs/partial"
    if ! base_chroot "$r" sh -c 'apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dir::Cache::archives=/var/cache/busbar-vm-debs/ linux-image-amd64' \
        >"$tmp/kernel.log" 2>&1; then
        tail -n 30 "$tmp/kernel.log" >&2
        die "installing linux-image-amd64 in the base root failed (log: $tmp/kernel.log)"
    fi

    # The guest's apt sources are the host's mirror (unused by the tests).
    printf 'deb %s %s main\n' "$mirror" "$BASE_SUITE" >"$r/etc/apt/sources.list"
    echo busbar-vm >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tbusbar-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    printf '/dev/vda\t/\text4\terrors=remount-ro\t0\t1\n' >"$r/etc/fstab"
    # A fixed machine id: an empty one would make every boot a "first boot"
    # (systemd-firstboot, presets); the guest is never copied anywhere.
    systemd-machine-id-setup --root="$r" >/dev/null
    # Timers that would start work in the middle of the checks.
    local u
    for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
    # The login user of the session checks (uid 1000, like a first user).
    chroot "$r" useradd --create-home --uid 1000 --user-group --shell /bin/bash tester
    # Root may log in on the serial console without a password (debugging
    # with BUSBAR_VM_INTERACTIVE=1).
    chroot "$r" passwd --delete root >/dev/null
    # Kernel and initramfs for qemu -kernel/-initrd (no boot loader).
    local k i
    k=$(find "$r/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
    i=$(find "$r/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
    [[ -n $k && -n $i ]] || die "no kernel/initramfs in $r/boot"
    cp "$k" "$tmp/vmlinuz"
    cp "$i" "$tmp/initrd.img"
    if command -v lsinitramfs >/dev/null 2>&1; then
        lsinitramfs "$tmp/initrd.img" | grep -q '/virtio_blk\.ko' ||
            die "the initramfs has no virtio_blk (MODULES=most expected)"
    fi
    # shellcheck disable=SC2016 # dpkg-query's format
    chroot "$r" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.lst"
    # Package caches are not part of the image.
    rmdir "$r/var/cache/busbar-vm-debs"
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*_Packages
    rm -rf "$dest"
    mv "$tmp" "$dest"
}

# base_ensure: set BASE_DIR to the directory of an up-to-date base root,
# building it when missing. Holds $cache/lock exclusively while building (so
# concurrent runs build it once) and returns holding it shared on fd 8, so
# no other run prunes the base root while this one copies it; close fd 8
# (base_release) when done with it.
base_ensure() {
    local mirror key dir
    mirror=$(base_mirror)
    key=$(base_key "$mirror")
    dir=$cache/base-$key
    mkdir -p "$cache"
    exec 8>"$cache/lock"
    flock -s 8
    if [[ ! -d $dir ]]; then
        # Exclusive: waits for runs still copying an older base root.
        flock 8
    fi
    if [[ ! -d $dir ]]; then
        local t0=$SECONDS
        base_build "$mirror" "$dir"
        say "vm: base root $dir built in $((SECONDS - t0))s"
        # Older base roots are of no further use.
        local old
        for old in "$cache"/base-*; do
            [[ $old == "$dir" || ! -d $old ]] || rm -rf "$old"
        done
    else
        say "vm: base root $dir (cached)"
    fi
    flock -s 8
    # shellcheck disable=SC2034 # used by run
    BASE_DIR=$dir
}

base_release() { exec 8>&-; }
