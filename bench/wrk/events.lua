-- POST /v1/events: each request is the body template in SENDERS_TEMPLATE (one JSON array or
-- NDJSON lines, Content-Type SENDERS_CONTENT_TYPE) with every \1 byte replaced by a tag unique
-- to the request (SENDERS_PREFIX, the thread number and the thread's request counter), so every
-- event_id, and every correlation_id, is new: the service stores each event once, none is a
-- duplicate. bench/senders.py writes the templates; see common.lua for the other variables.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local template, headers, tag

setup = common.setup
done = common.done

function init(args)
  local file = assert(io.open(assert(os.getenv("SENDERS_TEMPLATE"), "SENDERS_TEMPLATE"), "rb"))
  template = file:read("*a")
  file:close()
  headers = { ["Content-Type"] = assert(os.getenv("SENDERS_CONTENT_TYPE"), "SENDERS_CONTENT_TYPE") }
  tag = assert(os.getenv("SENDERS_PREFIX"), "SENDERS_PREFIX") .. "t" .. thread_number .. "n"
  common.init_thread()
end

function request()
  -- One gsub with a plain replacement string: the scan and copy run in C.
  local body = template:gsub("\1", tag .. (issued + 1))
  common.sending() -- counts the request and starts its clock, as wrk does right after
  return wrk.format("POST", "/v1/events", headers, body)
end
