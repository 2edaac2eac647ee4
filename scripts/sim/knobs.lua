-- Every knob of every virtual modem (athost.sim.core knobs) as a Markdown
-- table: name, models, values, default, what it varies. README.md's
-- "Virtual modems" section holds this table; tests/lua/sim_knobs_test.lua
-- says when the two differ.
--
--   athost scripts/sim/knobs.lua
local sim = require("athost.sim")

io.stdout:write(sim.knob_table())
