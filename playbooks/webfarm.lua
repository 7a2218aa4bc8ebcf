-- webfarm.lua: split this host into N Tiny Core guests, each with its own
-- memory quota and web site, all reachable through one port by host name.
--
--   tinyfarm run playbooks/webfarm.lua -e guests=3 -e mem=128M \
--     -e domain=farm.test -e listen=127.0.0.1:8080
--
-- vars:
--   guests   how many guests (default: as many as fit at mem, at most 4)
--   mem      memory per guest (default 128M; the seed's 1 GiB -> 4 guests)
--   cpus     CPU share per guest in cores (default 1)
--   driver   ns | qemu (default: ns as root on Linux)
--   domain   guests answer as <name>.<domain> (default farm.test)
--   site     nginx (a page per guest, default) | hello-site
--   proxy    embedded (default) | nginx | none
--   listen   embedded proxy address (default 127.0.0.1:8080)
--   dir      where the disks go (default: ./webfarm)
--   mirror   Tiny Core mirror URL (default: the official mirror)
--   kernel, initrd   for the qemu driver
--   motto    the line under each page's title (default "a tinyfarm guest")
--
-- Tags: guests, site, proxy (--tags site re-renders the pages only);
-- --limit web1 works on that guest alone.
local colinux, image, tcz = require("colinux"), require("image"), require("tcz")
local proxy = require("proxy")
local nginx, site = require("lib.nginx"), require("lib.site")

local mem = vars.mem or "128M"
local domain = vars.domain or "farm.test"
local dir = vars.dir or "webfarm"
if vars.mirror then tcz.mirror{ url = vars.mirror } end

local plan = colinux.plan{ granularity = mem }
local count = tonumber(vars.guests) or math.min(plan.guests, 4)
colinux.plan{ granularity = mem, guests = count } -- refuses to overcommit, naming the numbers

-- Each guest's page, rendered by g:template (see require("template")).
local page = [[
<h1>{{ name }}.{{ domain }}</h1>
<p>{{ motto or "a tinyfarm guest" }}</p>
]]

local names = {}
for i = 1, count do names[i] = "web" .. i end

local guests = parallel(names, function(name)
  local g
  task("guest " .. name, { tags = "guests", on = name }, function()
    local disk = image.build{
      path = dir .. "/" .. name .. ".img", size = "96M", hostname = name,
      extensions = { "dropbear" },
    }
    g = colinux.guest{
      name = name, disk = disk, mem = mem, cpus = tonumber(vars.cpus) or 1,
      driver = vars.driver, kernel = vars.kernel, initrd = vars.initrd,
    }
    g:start()
    g:wait_ready{ timeout = 90 }
  end)
  g = g or colinux.get(name) -- when --tags or --start-at-task skipped its task
  -- nginx reloads only when a run changed its site, once, after all tasks.
  handler("reload nginx on " .. name, function() nginx.reload(g) end)
  task("site " .. name, { tags = "site", on = name }, function()
    if vars.site == "hello-site" then
      site.install(g)
    else
      nginx.install(g, { template = page, vars = { name = name, domain = domain, motto = vars.motto } })
      notify("reload nginx on " .. name)
    end
  end)
  task("vhost " .. name .. "." .. domain, { tags = "proxy", on = name }, function()
    proxy.vhost{ host = name .. "." .. domain, to = g, port = 80 }
  end)
  return g
end)

local mode = vars.proxy or "embedded"
local listen = vars.listen or "127.0.0.1:8080"
if mode == "embedded" then
  -- a detached `tinyfarm proxy serve`: it outlives this run and picks up
  -- route changes by itself
  task("proxy on " .. listen, { tags = "proxy" }, function() proxy.daemon{ listen = listen } end)
elseif mode == "nginx" then
  task("proxy (nginx)", { tags = "proxy" }, function() proxy.nginx{ path = vars.nginx_conf or "/etc/nginx/conf.d/tinyfarm.conf", reload = true } end)
end

log("")
for _, g in ipairs(guests) do
  log(string.format("%-6s %-16s http://%s.%s/   curl -H 'Host: %s.%s' http://%s/",
    g.name, g.ip, g.name, domain, g.name, domain, listen))
end
