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
-- A tenant whose clients play different parts (gamma below) has roles;
-- a client names its role the same two ways: the header "x-role: expose"
-- or the session's second label, "session=gamma.expose.<uuid>".
--
-- This file runs once, in the one state the dispatcher keeps for
-- handler.lua: the tables below persist across calls, until a reload
-- starts a new state.  So the live tunnels of a tenant are not counted
-- here but by the dispatcher (req.tunnels[tenant]), which a reload does
-- not reset.
--
-- The tenants' secrets are not in this file: shipped passwords would be
-- known to everyone who has read it.  They come from the global
--
--   TENANT_SECRETS = { alpha = { pass = "...", encPass = "..." }, ... }
--
-- defined in the same script.  `make run` (scripts/run-dispatcher)
-- generates random ones at first start into files of mode 0600 in its
-- state directory, and loads a copy of this file with TENANT_SECRETS
-- appended (a policy can read no file itself).  In a deployment, append
-- yours the same way, or write pass and encPass into the tenants table
-- below; either way keep the file readable only by the dispatcher's user.
-- Use long random secrets (head -c 24 /dev/urandom | base64): one
-- recorded connection lets anyone test guesses offline, see
-- docs/security.md.  A tenant without both secrets is refused.

-- The tenants.  Every field is copied into getTunnelInfo's answer.
local tenants = {
	-- alpha: a forward tunnel.  A "t" forward makes the client listen on
	-- Src and the worker dial Dst (wire spec 5.7): alpha's users reach
	-- this host's ssh and web server through their local ports 10022 and
	-- 10080.  The worker runs kptunnel's plain "server" mode.
	alpha = {
		-- pass, encPass: the clients' -pass and -encPass, from
		-- TENANT_SECRETS.alpha unless set here.
		mode = "server",		-- forward: t is its default
		forwards = {
			"t,127.0.0.1:10022,127.0.0.1:22",
			"t,127.0.0.1:10080,127.0.0.1:80",
		},
		maxTunnels = 4,			-- concurrent clients
		idleTimeout = 600,		-- s without traffic, then stop
		-- Per-tunnel limits the worker enforces (absent: none).
		-- Up is what alpha's client sends, down what it receives.
		maxStreams = 64,		-- concurrent streams
		maxConnectRate = 20,		-- new streams a second
		rateUp = 5 * 1000 * 1000,	-- bytes a second
		rateDown = 20 * 1000 * 1000,
		maxBytes = 50 * 1000 * 1000 * 1000,	-- per session, both ways
		sessionTimeout = 600,		-- s a lost client may come back
	},
	-- beta: a reverse tunnel.  An "r" forward makes the worker listen on
	-- Src on this host and the client dial Dst on its side: port 20022
	-- here reaches the ssh server behind beta's client.  Two workers
	-- would fight over that port, hence one tunnel at a time.
	beta = {
		mode = "r-server",		-- reverse: r is its default
		forwards = {
			"r,127.0.0.1:20022,127.0.0.1:22",
		},
		maxTunnels = 1,
		idleTimeout = 3600,
		maxStreams = 16,
		rateUp = 2 * 1000 * 1000,
		rateDown = 2 * 1000 * 1000,
		sessionTimeout = 120,
	},
	-- gamma: two clients behind firewalls, joined through this host
	-- (docs/operations.md, "Joining two clients").  Its "expose" client
	-- runs beside a web service on a network it can only dial out of,
	-- and offers that service (its 127.0.0.1:8080) as the join point
	-- "web": the worker listens for it on a unix socket in the
	-- dispatcher's state directory, never on a TCP port of this host.
	-- Its "reach" clients, behind other firewalls, reach it as their
	-- own port 18080.  Both only dial this host's public port.  Join
	-- points are per tenant: a forward of another tenant to join:web
	-- reaches that tenant's own web, never gamma's.  The fields of a
	-- role replace the tenant's.
	gamma = {
		roles = {
			expose = {
				mode = "r-server",
				forwards = { "r,join:web,127.0.0.1:8080" },
			},
			reach = {
				mode = "server",
				forwards = { "t,127.0.0.1:18080,join:web" },
			},
		},
		maxTunnels = 8,			-- both roles together
		idleTimeout = 3600,
		maxStreams = 64,
		maxConnectRate = 50,
		rateUp = 10 * 1000 * 1000,
		rateDown = 10 * 1000 * 1000,
		sessionTimeout = 300,
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

-- The role a request names (tenants with roles only), or nil and why.
-- "gamma.expose.3f2c..." -> "expose".
local function roleOf(req, t)
	local header = req.headers["x-role"]
	local label = req.session:match("^[%w_-]+%.([%w_-]+)%.")
	if header and label and header ~= label then
		return nil, "x-role and session disagree"
	end
	local role = t.roles[header or label or ""]
	if not role then
		return nil, "name a role (x-role or the session's second label)"
	end
	return role, header or label
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
	local role, rname = {}, nil
	if t.roles then
		role, rname = roleOf(req, t)
		if not role then
			return nil, rname
		end
	end
	local s = (TENANT_SECRETS or {})[name] or {}
	local pass, encPass = t.pass or s.pass, t.encPass or s.encPass
	if not pass or not encPass then
		return nil, "tenant " .. name .. " has no secrets configured"
	end
	-- The dispatcher's count of the tenant's live tunnels (workers
	-- whose client authenticated, adopted ones and admissions in
	-- progress included).
	if req.tunnels[name] >= t.maxTunnels then
		return nil, "tenant " .. name .. " is at its tunnel limit"
	end
	serial = serial + 1
	return {
		-- [A-Za-z0-9._:@+-], unique (also across reloads)
		id = name .. "-" .. (rname and rname .. "-" or "") .. loaded ..
		    "-" .. serial,
		-- The tenant, whatever the role: join points are its own.
		tenant = name,
		mode = role.mode or t.mode,
		pass = pass,
		encPass = encPass,
		forwards = role.forwards or t.forwards,	-- copied
		idleTimeout = t.idleTimeout,
		-- Limits: read when the worker starts; a reload changes them
		-- for tunnels started after it only.
		maxStreams = t.maxStreams,
		maxConnectRate = t.maxConnectRate,
		rateUp = t.rateUp,
		rateDown = t.rateDown,
		maxBytes = t.maxBytes,
		sessionTimeout = t.sessionTimeout,
	}
end

-- A worker ended (client gone for good, idle, stopped from the console,
-- crashed).  Nothing to count down: req.tunnels already says one fewer.
function onEndTunnel(info, reason)
	log("info", "tenant " .. info.tenant .. ": tunnel " .. info.id ..
	    " ended (" .. reason .. ")")
end
