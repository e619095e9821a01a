-- Default handler.lua: one wsserver worker per client session, and
-- disabled until configured (a password and the forwards below).
--
-- Shipping a password would open every fresh install to anyone who read
-- this file, so while PASS is empty getTunnelInfo refuses each new session
-- with "no tenant configured" (the dispatcher answers 403 with that body).
-- To enable it, set PASS and ENCPASS below, keep this file readable only
-- by the dispatcher's user, and reload (SIGHUP or the console).
--
-- This file runs once in a state the dispatcher keeps: its locals and
-- globals persist between calls (see `sessions`).  docs/lua-api.md has
-- the whole API.

local PASS = ""		-- -pass of the clients; "" keeps the policy closed
local ENCPASS = ""	-- -encPass of the clients
local ENCCOUNT = -1	-- -encCount: -1 encrypts everything, 0 nothing

local sessions = 0	-- tunnels handed out since the last (re)load

-- A new session (no running worker has req.session): which worker to
-- start, or nil and the reason.
function getTunnelInfo(req)
	if PASS == "" then
		return nil, "no tenant configured"
	end
	sessions = sessions + 1
	return {
		id = "default-" .. sessions,
		tenant = "default",
		mode = "wsserver",	-- the worker speaks websocket itself
		pass = PASS,
		encPass = ENCPASS,
		encCount = ENCCOUNT,
		-- The worker's only forward list: a client's own list is
		-- refused, and an empty one means no forwards at all, so
		-- nothing works until you name them here, e.g.
		--   "t,127.0.0.1:8022,127.0.0.1:22"  the client listens on
		--     its 8022 and this host dials its own 127.0.0.1:22
		-- Letting clients choose would let them make this host dial
		-- anything it reaches (this dispatcher's console included).
		forwards = {},
		-- connectMode "CanReconnect", idleTimeout 600 and
		-- keepalive 20 are the defaults.
	}
end

-- The worker of info (getTunnelInfo's table, without the secrets) ended.
function onEndTunnel(info, reason)
	log("info", "tunnel " .. info.id .. " ended: " .. reason)
end
