# tests/vm/lib.sh: what berth's VM harnesses share (sourced, bash).
#
#   vm_kernel [PACKAGE]   Debian's 6.1 kernel (or PACKAGE), downloaded with
#                         apt-get and unpacked under $CACHE, never installed:
#                         sets KV, VMLINUZ, MODDIR
#   vm_tree               a fresh initramfs tree in $W: busybox, /etc/passwd
#   vm_add BINARY         BINARY at its own path in $W, with its libraries
#   vm_module NAME...     kernel modules (NAME.ko from MODDIR) into $W/modules,
#                         loaded by the guest in the order given
#   vm_boot INIT [SECS]   packs $W with INIT as /init (after a prologue that
#                         moves / to a tmpfs, mounts proc/sys/dev, loads the
#                         modules and mounts cgroup2 alone with every
#                         controller delegated to /sys/fs/cgroup/init), boots
#                         it with QEMU (KVM if asked and possible, else TCG)
#                         and prints what the guest wrote to its second
#                         serial port (/dev/ttyS1); $VM_QEMU_EXTRA is added
#                         to QEMU's arguments (a disk, say)
CACHE=${BERTH_VM_CACHE:-/var/tmp/berth-vm}

vm_kernel() {
  local pkg=${1:-}
  find_kernel() { apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | cut -d' ' -f1 | sort -V | tail -1; }
  [ -n "$pkg" ] || pkg=$(find_kernel)
  [ -n "$pkg" ] || { apt-get update -qq >/dev/null && pkg=$(find_kernel); }
  [ -n "$pkg" ] || { echo "vm: no Debian 6.1 kernel package found (apt-get update?)" >&2; return 2; }
  KV=${pkg#linux-image-}
  mkdir -p "$CACHE/debs" "$CACHE/k"
  if [ ! -f "$CACHE/k/$KV/boot/vmlinuz-$KV" ]; then
    (cd "$CACHE/debs" && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null)
    rm -rf "$CACHE/k/$KV.tmp" && dpkg-deb -x "$CACHE"/debs/"${pkg}"_*.deb "$CACHE/k/$KV.tmp"
    mv "$CACHE/k/$KV.tmp" "$CACHE/k/$KV"
  fi
  VMLINUZ=$CACHE/k/$KV/boot/vmlinuz-$KV
  MODDIR=$CACHE/k/$KV/lib/modules/$KV
}

vm_tree() {
  W=$(mktemp -d "$CACHE/irfs.XXXX")
  mkdir -p "$W"/{bin,sbin,proc,sys,dev,tmp,run,etc,root,modules}
  printf "root:x:0:0:root:/root:/bin/sh\n" > "$W/etc/passwd"
  cp "$(command -v busybox || echo /bin/busybox)" "$W/bin/busybox"
  : > "$W/modules/order"
}

vm_add() {
  mkdir -p "$W$(dirname "$1")"; cp "$1" "$W$1"
  local l
  for l in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$W$(dirname "$l")"; cp -L "$l" "$W$l"; done
}

vm_module() {
  local m f
  for m in "$@"; do
    f=$(find "$MODDIR" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "vm: no module $m in $MODDIR" >&2; return 2; }
    cp "$f" "$W/modules/$m.ko" && echo "$m" >> "$W/modules/order"
  done
}

vm_boot() {
  local init=$1 secs=${2:-1200}
  cat > "$W/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
# pivot_root (every container does it) refuses the initramfs root: move to a tmpfs.
if [ -z "${SWITCHED:-}" ]; then
  mkdir -p /newroot && mount -t tmpfs -o size=3g tmpfs /newroot
  for e in /*; do case $e in /newroot|/proc|/sys|/dev) ;; *) cp -a "$e" /newroot/ ;; esac; done
  mkdir -p /newroot/proc /newroot/sys /newroot/dev
  export SWITCHED=1
  exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko; done
mkdir -p /dev/pts /dev/shm /dev/mqueue && mount -t devpts devpts /dev/pts && mount -t mqueue mqueue /dev/mqueue
# / is a tmpfs already: no tmpfs over /tmp, which would hide a clone that
# lives under /tmp (binaries sit at their host paths).
chmod 1777 /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# The job runs in a child cgroup; the root's controllers are delegated down.
mkdir /sys/fs/cgroup/init && echo $$ > /sys/fs/cgroup/init/cgroup.procs
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
echo "VM: kernel $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)" > /dev/ttyS1
INIT
  cat "$init" >> "$W/init"
  printf '\npoweroff -f\n' >> "$W/init"
  chmod +x "$W/init"
  (cd "$W" && find . | cpio -o -H newc --quiet | gzip -1) > "$W.cpio.gz"
  local acc="-accel tcg,thread=multi -cpu max"
  if [ -w /dev/kvm ] && [ "${BERTH_VM_ACCEL:-tcg}" = kvm ]; then acc="-enable-kvm -cpu host"; fi
  local out=$W.out con=$W.console
  timeout "$secs" qemu-system-x86_64 $acc -smp 2 -m 3G -M q35 \
    -kernel "$VMLINUZ" -initrd "$W.cpio.gz" \
    -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=3 rdinit=/init" \
    -display none -monitor none -no-reboot ${VM_QEMU_EXTRA:-} \
    -serial "file:$con" -serial "file:$out" || echo "vm: qemu exited with $?" >&2
  tr -d '\r' < "$out"
  rm -rf "$W" "$W.cpio.gz" "$out" "$con"
}
