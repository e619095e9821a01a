-- lua/multitenant/canAccept.lua: admission for lua/multitenant/handler.lua.
--
-- Runs in a fresh state for every request (also for reconnects and
-- disconnects of running sessions), before any tunnel is looked up: it
-- refuses early, cheaply and with a precise status what handler.lua
-- would refuse anyway, and adds a per-tenant check on the client address.

-- Tenant names, and where each tenant's clients may connect from.  This
-- state can not see handler.lua's table: keep the names in sync.
local tenants = {
	alpha = {},				-- from anywhere
	beta = { from = { "127.", "::1", "10." } }, -- remote_addr prefixes
	gamma = {},				-- its roles: handler.lua
}

-- Same rule as handler.lua: "x-tenant" header or "<tenant>." session
-- prefix, which must agree when both are there.
local function tenantOf(req)
	local header = req.headers["x-tenant"]
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

-- Plain prefix comparison: no pattern characters in addresses to escape.
local function startsWith(s, p)
	return s:sub(1, #p) == p
end

function canAccept(req)
	-- A websocket upgrade is a GET (RFC 6455 4.1).
	if req.method ~= "GET" then
		return false, 405, "websocket upgrade expected"
	end
	local name, why = tenantOf(req)
	if not name then
		return false, 400, why
	end
	local t = tenants[name]
	if not t then
		return false, 403, "unknown tenant"
	end
	if t.from then
		for _, p in ipairs(t.from) do
			if startsWith(req.remote_addr, p) then
				return true
			end
		end
		log("warn", "tenant " .. name .. ": refused " .. req.remote_addr)
		return false, 403, "address not allowed for this tenant"
	end
	return true
end
