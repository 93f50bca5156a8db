#!/bin/bash
# fleet-lab machine init. Runs as PID 1 of fresh PID, mount, UTS, IPC, cgroup
# (and, unless the cluster shares the host network, net) namespaces, created by
#   unshare --pid --fork --kill-child --mount --uts --ipc [--net] --cgroup \
#           --propagation private --mount-proc machine-init.sh DIR [KEEP...]
# after the caller moved itself into the machine's own cgroup2 directory.
#
# It makes every place where systemd or its services write private to this
# machine (see docs/lab.md, "Hazards"), then execs systemd. Nothing here may
# write to a host path: /etc and /var are copy-on-write overlays whose upper
# layers live in DIR, /run, /tmp, /var/tmp, /dev are fresh tmpfs, /sys and
# /proc/sys are read-only.
#
#   DIR   the machine's state directory on the host; holds seed/ (files to
#         install into /run and /etc, prepared by the lab), the overlay layers
#         and two empty staging mount points (run, dev).
#   KEEP  host paths that the private mounts would hide and that must stay
#         visible at the same path (the project's checkout when it lives under
#         /tmp): bind-mounted aside first, moved back last.
set -euo pipefail
shopt -s nullglob

dir=$1
shift

# The lab configures this machine's network from the host, then writes "go"
# on our stdin; systemd must not start services before the address exists.
if ! read -r -t 60 go || [ "$go" != go ]; then
  echo "fleet-lab-init: no go signal from the lab" >&2
  exit 1
fi
exec </dev/null

# The new /run, staged inside DIR while the host's /run is still visible.
run=$dir/run
mount -n -t tmpfs -o mode=0755,nosuid,nodev,size=25% fleet-lab-run "$run"

# Paths to keep, parked inside the new /run until the covering mounts are done.
i=0
for path in "$@"; do
  mkdir -p "$run/.fleet-lab-keep/$i"
  mount -n --rbind "$path" "$run/.fleet-lab-keep/$i"
  i=$((i + 1))
done

# Hazards 2, 3, 6: /etc and /var are copy-on-write; the host's files never change.
for d in etc var; do
  mount -n -t overlay -o "lowerdir=/$d,upperdir=$dir/$d.upper,workdir=$dir/$d.work" "fleet-lab-$d" "/$d"
done

# Hazard 1: systemd-tmpfiles empties /tmp at boot; give it a private one.
mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=25% fleet-lab-tmp /tmp
mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=25% fleet-lab-var-tmp /var/tmp

# A private /dev (hazard 8 and more: journald would link the host's /dev/log,
# tmpfiles would adjust host device nodes): the skeleton from seed/dev (null,
# zero, full, random, urandom, tty; no kmsg), its own devpts and shm, and
# /dev/console bound to /dev/null so PID 1 never writes to the VM's console.
dev=$dir/dev
mount -n -t tmpfs -o mode=0755,nosuid,size=4m fleet-lab-dev "$dev"
cp -a "$dir/seed/dev/." "$dev/"
mount -n --bind /dev/null "$dev/console"
mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec fleet-lab-devpts "$dev/pts"
mount -n -t tmpfs -o mode=1777,nosuid,nodev fleet-lab-shm "$dev/shm"
mount -n --move "$dev" /dev

# Hazard 5: kernel-global settings stay read-only. Hazard 7: this machine's
# cgroup tree is its own cgroup namespace (cgroup2 only, rooted at its directory).
# A fresh sysfs shows this machine's network namespace; in the host's network
# namespace (--share-net) the kernel refuses one, so bind the host's read-only.
if ! mount -n -t sysfs -o ro,nosuid,nodev,noexec fleet-lab-sys /sys 2>/dev/null; then
  mount -n --bind /sys /sys
  mount -n -o remount,bind,ro,nosuid,nodev,noexec /sys
fi
mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
for p in /proc/sys /proc/sysrq-trigger; do
  if [ ! -e "$p" ]; then continue; fi
  mount -n --bind "$p" "$p"
  mount -n -o remount,bind,ro,nosuid,nodev,noexec "$p"
done

# Hazard 4: units the host enabled must not start here. Remove their wants and
# requires links and alias links (etcd2.service → etcd.service) in the overlay.
rm -f /etc/systemd/system/*.wants/* /etc/systemd/system/*.requires/*
find /etc/systemd/system -maxdepth 1 -type l ! -lname /dev/null -delete

# Identity and configuration prepared by the lab: machine-id, hostname, hosts,
# fstab, runtime units and masks, journald drop-in, environment file, masks of
# the host's generators and tmpfiles.d files filtered to private paths.
cp -a "$dir/seed/run/." "$run/"
cp -a "$dir/seed/etc/." /etc/
cp -a "$dir/seed/var/." /var/

mount -n --move "$run" /run
i=0
for path in "$@"; do
  mkdir -p "$path"
  mount -n --move "/run/.fleet-lab-keep/$i" "$path"
  rmdir "/run/.fleet-lab-keep/$i"
  i=$((i + 1))
done
if [ -d /run/.fleet-lab-keep ]; then rmdir /run/.fleet-lab-keep; fi

cd /
exec env -i container=other PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /usr/lib/systemd/systemd --system --unit=fleet-lab.target
