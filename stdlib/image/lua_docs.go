//go:build linux

package image

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "image.build", Call: "image.build{path, size, fs, label, core, layout, hostname, authorized_keys, extensions, files, bootlocal}", Opts: buildOpts{},
			Summary: "A tinycolinux disk {path, host_key, layout, fs, size, uuid, bootcodes, extensions, changed}:\natomic, e2fsck-clean, rebuilt only when its inputs change; the farm key is authorized and a\nguest SSH host key generated and kept. Needs root.",
			Example: `local disk = image.build{ path = "web1.img", size = "96M", hostname = "web1", extensions = { "dropbear" } }`},
		{Name: "image.edit", Call: "image.edit(path, fn)", Summary: "fn(t) changes a stopped guest's disk offline through a target."},
		{Name: "image.unpack", Call: "image.unpack(core, dir)", Summary: "Extracts an initramfs (core.gz) into dir."},
		{Name: "image.pack", Call: "image.pack(dir, out, {mtime, level})", Opts: packOpts{},
			Summary: "A reproducible initramfs of dir."},
	}
}
