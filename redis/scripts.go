package redis

import "github.com/redis/rueidis"

// Keys, all under the configured prefix P:
//
//	P epoch              the epoch (string)
//	P seq                the last sequence number given out
//	P msg                the pub/sub channel every publish goes out on
//	P <epoch>:t:<topic>  a topic's retained messages: a stream whose entry
//	                     IDs are <seq>-0, fields e (event), d (data),
//	                     ms (publish time, Redis clock)
//	P <epoch>:log        every retained message in sequence order: a
//	                     stream, fields t (topic), n (size), ms
//	P <epoch>:ev         per topic, the highest sequence number no longer
//	                     retained (a hash)
//	P <epoch>:floor      a sequence number every topic counts as evicted
//	                     up to, raised when ev is thinned out
//	P <epoch>:bytes      the size of everything retained
//
// Every script works on one consistent view: Redis runs it alone.

// common holds the Lua shared by the scripts that may start an epoch.
// ARGV[1] is the prefix.
const common = `
local P = ARGV[1]
local function fmt(n) return string.format('%d', n) end

-- current returns the epoch and last sequence number, starting a new
-- epoch (candidate) when there is none (Redis lost its data), or when the
-- caller saw more of this epoch than Redis has (Redis came back from an
-- older snapshot): IDs handed out would otherwise be handed out twice.
local function current(candidate, known_epoch, known_head)
	local ep = redis.call('GET', P .. 'epoch')
	local seq = tonumber(redis.call('GET', P .. 'seq') or '0')
	if ep and not (ep == known_epoch and seq < known_head) then
		return ep, seq
	end
	if ep then
		for _, k in ipairs({':log', ':ev', ':floor', ':bytes'}) do
			redis.call('DEL', P .. ep .. k)
		end
	end
	redis.call('SET', P .. 'epoch', candidate)
	redis.call('SET', P .. 'seq', 0)
	return candidate, 0
end

-- trim evicts the oldest retained messages while there are more bytes
-- than max_bytes or they are older than ttl_ms, at most budget of them,
-- and keeps the ev hash (tombstones) bounded.
local function trim(E, ttl_ms, max_bytes, now, budget)
	local log = P .. E .. ':log'
	local bkey = P .. E .. ':bytes'
	local ev = P .. E .. ':ev'
	local bytes = tonumber(redis.call('GET', bkey) or '0')
	local cutoff = now - ttl_ms
	local done = 0
	while done < budget do
		-- Usually nothing is due: look at the oldest entry alone first.
		local batch = redis.call('XRANGE', log, '-', '+', 'COUNT', done == 0 and 1 or 32)
		if #batch == 0 then break end
		local stop = false
		for _, e in ipairs(batch) do
			local f = e[2]
			if bytes <= max_bytes and tonumber(f[6]) > cutoff then
				stop = true
				break
			end
			local tk = P .. E .. ':t:' .. f[2]
			redis.call('XDEL', tk, e[1])
			if redis.call('XLEN', tk) == 0 then redis.call('DEL', tk) end
			redis.call('XDEL', log, e[1])
			redis.call('HSET', ev, f[2], string.match(e[1], '^%d+'))
			bytes = bytes - tonumber(f[4])
			done = done + 1
		end
		if stop then break end
	end
	if done > 0 then redis.call('SET', bkey, fmt(bytes)) end
	if redis.call('HLEN', ev) > 100000 then
		local floor = tonumber(redis.call('GET', P .. E .. ':floor') or '0')
		local some = redis.call('HRANDFIELD', ev, 25000, 'WITHVALUES')
		for i = 1, #some, 2 do
			floor = math.max(floor, tonumber(some[i + 1]))
			redis.call('HDEL', ev, some[i])
		end
		redis.call('SET', P .. E .. ':floor', fmt(floor))
	end
end

local function now_ms()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// publishScript numbers a batch, retains it and publishes it, all in one
// call. ARGV: prefix, candidate epoch, known epoch, known head, history,
// ttl_ms, max_bytes, then topic, event, data per message. It returns
// {epoch, first sequence number}. The pub/sub message is
// "<epoch>\n<first>\n<ms>\n" followed by, per message, the topic, event
// and data, each as "<length>:<bytes>".
var publishScript = rueidis.NewLuaScript(common + `
local E, seq = current(ARGV[2], ARGV[3], tonumber(ARGV[4]))
local hist, ttl_ms, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n = (#ARGV - 7) / 3
local first = redis.call('INCRBY', P .. 'seq', n) - n + 1
local now = now_ms()
local log = P .. E .. ':log'
local ev = P .. E .. ':ev'
local added = 0
local parts = {E, '\n', fmt(first), '\n', fmt(now), '\n'}
for i = 0, n - 1 do
	local topic, event, data = ARGV[8 + 3 * i], ARGV[9 + 3 * i], ARGV[10 + 3 * i]
	local s = first + i
	if hist > 0 then
		local id = fmt(s) .. '-0'
		local tk = P .. E .. ':t:' .. topic
		local size = #topic + #event + #data + 128
		redis.call('XADD', tk, id, 'e', event, 'd', data, 'ms', fmt(now))
		redis.call('XADD', log, id, 't', topic, 'n', fmt(size), 'ms', fmt(now))
		redis.call('PEXPIRE', tk, ttl_ms + 60000)
		added = added + size
		local excess = redis.call('XLEN', tk) - hist
		if excess > 0 then
			local last
			for _, e in ipairs(redis.call('XRANGE', tk, '-', '+', 'COUNT', excess)) do
				added = added - (#topic + #e[2][2] + #e[2][4] + 128)
				redis.call('XDEL', tk, e[1])
				redis.call('XDEL', log, e[1])
				last = e[1]
			end
			redis.call('HSET', ev, topic, string.match(last, '^%d+'))
		end
	else
		redis.call('HSET', ev, topic, fmt(s))
	end
	parts[#parts + 1] = fmt(#topic) .. ':' .. topic .. fmt(#event) .. ':' .. event .. fmt(#data) .. ':' .. data
end
if added ~= 0 then redis.call('INCRBY', P .. E .. ':bytes', added) end
if hist > 0 then trim(E, ttl_ms, max_bytes, now, 1000) end
redis.call('PUBLISH', P .. 'msg', table.concat(parts))
return {E, first}
`)

// syncScript is an instance's periodic look at the sequence: it starts a
// new epoch if need be, expires history while nobody publishes, and
// returns {epoch, last sequence number}. ARGV: prefix, candidate epoch,
// known epoch, known head, ttl_ms, max_bytes.
var syncScript = rueidis.NewLuaScript(common + `
local E, seq = current(ARGV[2], ARGV[3], tonumber(ARGV[4]))
trim(E, tonumber(ARGV[5]), tonumber(ARGV[6]), now_ms(), 10000)
return {E, seq}
`)

// replayScript reads what a subscriber resuming from a cursor must be
// sent. ARGV: prefix, epoch, after, earliest (1 or 0), most bytes, topics.
// It returns {epoch, last sequence number, reset (1 or 0), then per
// topic: topic, entries}; entries as XRANGE gives them. A replay of more
// than most bytes of payload is a reset: each subscriber's replay is a
// copy, and many at once must not exhaust memory.
var replayScript = rueidis.NewLuaScript(`
local P = ARGV[1]
local ep = redis.call('GET', P .. 'epoch')
local seq = tonumber(redis.call('GET', P .. 'seq') or '0')
if ep ~= ARGV[2] then return {ep or '', seq, 1} end
local after = tonumber(ARGV[3])
if ARGV[4] == '1' then
	after = 0
else
	if after > seq then return {ep, seq, 1} end
	local floor = tonumber(redis.call('GET', P .. ep .. ':floor') or '0')
	for i = 6, #ARGV do
		local ev = tonumber(redis.call('HGET', P .. ep .. ':ev', ARGV[i]) or '0')
		if math.max(ev, floor) > after then return {ep, seq, 1} end
	end
end
local budget = tonumber(ARGV[5])
local out = {ep, seq, 0}
local from = string.format('%d', after + 1) .. '-0'
for i = 6, #ARGV do
	local entries = redis.call('XRANGE', P .. ep .. ':t:' .. ARGV[i], from, '+')
	for _, e in ipairs(entries) do
		budget = budget - #e[2][4]
	end
	if budget < 0 then return {ep, seq, 1} end
	out[#out + 1] = ARGV[i]
	out[#out + 1] = entries
end
return out
`)

// fillScript reads the retained messages with sequence numbers in
// (from, to], at most limit of them, for an instance that missed them.
// ARGV: prefix, epoch, from, to, limit. It returns {epoch, last sequence
// number, then per message: seq, topic, event, data, ms}. Messages no
// longer retained are missing from the answer.
var fillScript = rueidis.NewLuaScript(`
local P = ARGV[1]
local ep = redis.call('GET', P .. 'epoch')
local seq = tonumber(redis.call('GET', P .. 'seq') or '0')
if ep ~= ARGV[2] then return {ep or '', seq} end
local out = {ep, seq}
local from = string.format('%d', tonumber(ARGV[3]) + 1) .. '-0'
local to = ARGV[4] .. '-0'
for _, e in ipairs(redis.call('XRANGE', P .. ep .. ':log', from, to, 'COUNT', tonumber(ARGV[5]))) do
	local f = e[2]
	local body = redis.call('XRANGE', P .. ep .. ':t:' .. f[2], e[1], e[1])
	if #body == 1 then
		out[#out + 1] = string.match(e[1], '^%d+')
		out[#out + 1] = f[2]
		out[#out + 1] = body[1][2][2]
		out[#out + 1] = body[1][2][4]
		out[#out + 1] = f[6]
	end
end
return out
`)

// statsScript describes the shared history. ARGV: prefix. It returns
// {epoch, last sequence number, messages retained, bytes retained}.
var statsScript = rueidis.NewLuaScript(`
local P = ARGV[1]
local ep = redis.call('GET', P .. 'epoch')
if not ep then return {'', 0, 0, 0} end
local seq = tonumber(redis.call('GET', P .. 'seq') or '0')
local n = redis.call('XLEN', P .. ep .. ':log')
local bytes = tonumber(redis.call('GET', P .. ep .. ':bytes') or '0')
return {ep, seq, n, bytes}
`)
