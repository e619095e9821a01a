-- Default canAccept.lua: admits every websocket upgrade request.
--
-- The dispatcher runs this file in a fresh, restricted Lua 5.4 state for
-- each request (docs/lua-api.md), concurrently and within an instruction
-- budget: nothing set here survives the request.  Admitting a request is
-- not starting a tunnel: a new session still needs getTunnelInfo in
-- handler.lua, which refuses until it is configured.

-- req: method, path, query (name -> first value), headers (lower-cased
-- names), remote_addr, session, mode ("", "Reconnect", "Disconnect").
-- Return true to admit; false, status (400..599), body to refuse.
function canAccept(req)
	return true
end
