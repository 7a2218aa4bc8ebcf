// Package qemu is the colinux driver that runs a guest as a full QEMU
// virtual machine.
//
// The rendering is pure: Args turns a driver.Spec into the qemu argv
// (golden-tested), choosing the microvm + PVH fast path when the kernel is
// an ELF vmlinux (-M microvm,pit=on,pic=on,rtc=on, virtio-*-device; about
// 2 s to userspace under TCG) and the pc machine for a bzImage. The
// accelerator is Spec.Accel ("tcg" by default), never guessed from
// /dev/kvm.
//
// The executing part is thin. Runner.Start writes the guest's runtime
// files into Spec.Dir and starts QEMU in its own session, so guests
// outlive tinyfarm:
//
//	console.log      serial console, appended across restarts (rotated to
//	                 console.log.1 above Runner.ConsoleMax)
//	qemu.log         QEMU's own messages, timestamped
//	qmp.sock         QMP control socket (one client at a time)
//	qemu.pid         written by QEMU; Attach checks /proc/PID/cmdline
//	                 names this file, so a reused PID is never adopted
//	boot.json        PID, console offset and argv of the current run
//	stop-requested   written by Stop: an exit after it is not a crash
//	exit.json        how the last run ended (stopped or crashed, and why)
//	initrd.img       several Spec.Initrds concatenated
//
// Readiness is the serial console: WaitReady follows console.log from the
// start of this boot for driver.ReadyMarker; the colinux module then makes
// one SSH connection. Guest poweroff and reboot do not end QEMU (-action
// reboot=shutdown,shutdown=pause): the run state "shutdown" tells a clean
// poweroff (or a kernel panic, found on the console) from QEMU being
// killed, which the runner could not tell apart otherwise once it is no
// longer QEMU's parent. Status reaps such a guest.
//
// Suspend and Resume are QMP stop/cont; Checkpoint is QMP migrate to
// "exec:cat > FILE" and Runner.Restore boots with -incoming from it.
// The QMP client (DialQMP) speaks the JSON protocol directly.
//
// Networking is QEMU user mode with host forwards on 127.0.0.1 and a fixed
// MAC (MAC derives one from the guest name), or, as root, Net.Mode
// "bridge": a tap device on the farm bridge (-netdev tap,ifname=TAP,
// script=no,downscript=no), made before QEMU starts and removed whenever
// the run's resources are released (Stop, reaping, or the first Status
// or Stop that finds QEMU gone). The guest configures itself by DHCP
// (Tiny Core's udhcpc) from the farm's DHCP server, which answers its MAC
// with its farm IP; see package farmnet.
package qemu
