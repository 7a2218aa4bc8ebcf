package tcz

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "tcz.mirror", Call: "tcz.mirror{url, version, arch, cache, kernel}", Opts: mirrorOpts{},
			Summary: "The run's mirror (http, https, file; default the official one, 15.x, x86_64); the cache keeps\nTiny Core's optional/ layout."},
		{Name: "tcz.deps", Call: "tcz.deps(name)", Summary: "Install order, dependencies first (-KERNEL substituted)."},
		{Name: "tcz.fetch", Call: "tcz.fetch(name)", Summary: "Downloads with md5 verified before the file enters the cache."},
		{Name: "tcz.info", Call: "tcz.info(name)", Summary: "The .info fields."},
		{Name: "tcz.search", Call: "tcz.search(term)", Summary: "Extension names matching term."},
		{Name: "tcz.install", Call: "tcz.install(target, name, {onboot, overwrite})", Opts: installOpts{},
			Summary: "Extracts the package and its dependencies into a target and marks it installed.",
			Example: `tcz.install(g, "nginx")`},
		{Name: "tcz.remove", Call: "tcz.remove(target, name)", Summary: "Removes exactly the package's own files."},
		{Name: "tcz.installed", Call: "tcz.installed(target)", Summary: "The installed extensions."},
		{Name: "tcz.pack", Call: "tcz.pack{dir, name, deps, out, info, all_root, epoch}", Opts: packOpts{},
			Summary: "A .tcz with .md5.txt, .dep, .list and .info for your own mirror."},
	}
}
