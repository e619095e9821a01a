-- lua/multitenant/handler.lua: one host, several tenants, each with its
-- own secrets, worker mode and forwards.  Pair it with
-- lua/multitenant/canAccept.lua; docs/lua-api.md describes the API.
--
-- A client names its tenant in one of two ways (both may be given, but
-- then they must agree):
--   * the request header "x-tenant: alpha" (tunneld/kptunnel client
--     option -header "X-Tenant: alpha"), or
--   * the prefix of its session id, up to the first dot:
--     "session=alpha.<anything>" (client option -session alpha.<uuid>).
--
-- This file runs once, in the one state the dispatcher keeps for
-- handler.lua: the tables below persist across calls, until a reload
-- starts a new state.  So the live tunnels of a tenant are not counted
-- here but by the dispatcher (req.tunnels[tenant]), which a reload does
-- not reset.  Keep it readable only by the dispatcher's user: it holds
-- the tenants' secrets.

-- The tenants.  Every field is copied into getTunnelInfo's answer.
local tenants = {
	-- alpha: a forward tunnel.  A "t" forward makes the client listen on
	-- Src and the worker dial Dst (wire spec 5.7): alpha's users reach
	-- this host's ssh and web server through their local ports 10022 and
	-- 10080.  The worker runs kptunnel's plain "server" mode.
	alpha = {
		pass = "alpha-pass-CHANGE-ME",	-- the clients' -pass
		encPass = "alpha-enc-CHANGE-ME", -- the clients' -encPass
		mode = "server",		-- forward: t is its default
		forwards = {
			"t,127.0.0.1:10022,127.0.0.1:22",
			"t,127.0.0.1:10080,127.0.0.1:80",
		},
		maxTunnels = 4,			-- concurrent clients
		idleTimeout = 600,		-- s without traffic, then stop
	},
	-- beta: a reverse tunnel.  An "r" forward makes the worker listen on
	-- Src on this host and the client dial Dst on its side: port 20022
	-- here reaches the ssh server behind beta's client.  Two workers
	-- would fight over that port, hence one tunnel at a time.
	beta = {
		pass = "beta-pass-CHANGE-ME",
		encPass = "beta-enc-CHANGE-ME",
		mode = "r-server",		-- reverse: r is its default
		forwards = {
			"r,127.0.0.1:20022,127.0.0.1:22",
		},
		maxTunnels = 1,
		idleTimeout = 3600,
	},
}

local serial = 0	-- with the load time, makes every tunnel id unique
local loaded = os.time()

-- The tenant a request names, or nil and why not.  The same function is
-- in canAccept.lua, which runs in another state and can not share it.
local function tenantOf(req)
	local header = req.headers["x-tenant"]
	-- "alpha.3f2c..." -> "alpha"; nil when there is no dot.
	local prefix = req.session:match("^([%w_-]+)%.")
	if header and prefix and header ~= prefix then
		return nil, "x-tenant and session disagree"
	end
	local name = header or prefix
	if not name then
		return nil, "no tenant named"
	end
	return name
end

-- A new session: pick the tenant, check its quota, hand out its worker.
function getTunnelInfo(req)
	local name, why = tenantOf(req)
	if not name then
		return nil, why			-- 403 with this body
	end
	local t = tenants[name]
	if not t then
		-- Do not echo the name: it is the client's text.
		return nil, "unknown tenant"
	end
	-- The dispatcher's count of the tenant's live tunnels (workers
	-- running, adopted ones and admissions in progress included).
	if req.tunnels[name] >= t.maxTunnels then
		return nil, "tenant " .. name .. " is at its tunnel limit"
	end
	serial = serial + 1
	return {
		-- [A-Za-z0-9._:@+-], unique (also across reloads)
		id = name .. "-" .. loaded .. "-" .. serial,
		tenant = name,
		mode = t.mode,
		pass = t.pass,
		encPass = t.encPass,
		forwards = t.forwards,	-- copied by the dispatcher
		idleTimeout = t.idleTimeout,
	}
end

-- A worker ended (client gone for good, idle, stopped from the console,
-- crashed).  Nothing to count down: req.tunnels already says one fewer.
function onEndTunnel(info, reason)
	log("info", "tenant " .. info.tenant .. ": tunnel " .. info.id ..
	    " ended (" .. reason .. ")")
end
