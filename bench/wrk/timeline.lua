-- GET /api/orders/{id}/timeline of a random order among the ids in SENDERS_IDS (one a line:
-- orders bench/senders.py stored before), counting answers by status; with SENDERS_EXACT (one
-- connection per thread) every request is timed in Lua too.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

local paths = {}

setup = common.setup
done = common.done

function init(args)
  local ids_file = assert(os.getenv("SENDERS_IDS"), "SENDERS_IDS")
  for id in io.lines(ids_file) do
    if id ~= "" then
      table.insert(paths, "/api/orders/" .. id .. "/timeline")
    end
  end
  assert(#paths > 0, "no ids in SENDERS_IDS")
  math.randomseed(thread_number * 7919 + os.time())
  common.init_thread()
  if response == nil then
    response = common.response -- a timeline read must answer 200: always count
  end
end

function request()
  common.sending()
  return wrk.format("GET", paths[math.random(#paths)])
end
