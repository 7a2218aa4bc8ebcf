package persist

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "persist.bootlocal", Call: "persist.bootlocal(target, lines, {id})", Opts: blockOpts{},
			Summary: "A managed block per id in opt/bootlocal.sh; your own lines are kept.",
			Example: `persist.bootlocal(g, { "/usr/local/sbin/nginx" }, { id = "nginx" })`},
		{Name: "persist.bootsync", Call: "persist.bootsync(target, lines, {id})", Opts: blockOpts{},
			Summary: "The same in opt/bootsync.sh."},
		{Name: "persist.onboot", Call: "persist.onboot(target, names, {remove, tce_dir})", Opts: onbootOpts{},
			Summary: "tce/onboot.lst: exact names, no duplicates."},
		{Name: "persist.filetool", Call: "persist.filetool(target, {add, exclude, remove})", Opts: filetoolOpts{},
			Summary: "opt/.filetool.lst and .xfiletool.lst."},
		{Name: "persist.backup", Call: "persist.backup(target, {safe, name, dir})", Opts: backupOpts{},
			Summary: "mydata.tgz the way Tiny Core's filetool makes it."},
		{Name: "persist.restore", Call: "persist.restore(target, file)", Summary: "Unpacks a backup into the target."},
	}
}
