"""Implementation tuning of the node: timeouts, bounds and batch sizes.

The protocol's own constants (IV and MAC lengths, the 3-minute window, the 16,384 remembered
packets) come from the Rust core (`smolmesh._core`); these are our choices and may change freely.
"""

# --- Links ---
HANDSHAKE_TIMEOUT_S = 10.0  # an unauthenticated connection is closed after this
MAX_PENDING_HANDSHAKES = 64  # beyond this, a new connection evicts the oldest unauthenticated one
# Incoming links are refused once the links up would leave fewer than this many of the process's
# open files (RLIMIT_NOFILE) for the rest: unauthenticated connections, listeners, dials, the TUN
# device, netlink, the status socket and its clients. `smolmesh meshnode` first raises its soft
# limit to the hard one.
FILES_KEPT_FREE = MAX_PENDING_HANDSHAKES + 64
CONNECT_TIMEOUT_S = 10.0
# Refused incoming connections get a log line each up to this many per period; the rest are
# counted in one line when the next period begins.
REFUSALS_LOGGED_PER_PERIOD = 20
REFUSAL_LOG_PERIOD_S = 10.0
REDIAL_MIN_S = 5.0  # an outgoing link that fails is dialled again after a random 5-10 s
REDIAL_MAX_S = 10.0
# Silent death (no FIN, no RST) is noticed by the kernel: keepalive probes after 1 s idle, and
# any data or probe left unacknowledged for TCP_USER_TIMEOUT_MS closes the connection.
TCP_KEEPIDLE_S = 1
TCP_KEEPINTVL_S = 1
TCP_KEEPCNT = 3
TCP_USER_TIMEOUT_MS = 3000
# Before that, a link is *silent* once the oldest data sent over it has gone unacknowledged through
# SILENT_AFTER_TIMEOUTS retransmission timeouts in a row (about 0.6 s on a LAN) and nothing at all
# has been acknowledged for SILENT_AFTER_S: its routes move to backup paths at once, and it may
# carry them again when it answers. A link that has sent something reads this from the kernel
# (TCP_INFO, Linux) every SILENCE_CHECK_PERIOD_S until all it sent is acknowledged; see
# links/tcp.py, silence_of.
SILENT_AFTER_TIMEOUTS = 2
SILENT_AFTER_S = 0.5
SILENCE_CHECK_PERIOD_S = 0.1
# A peer whose kernel acknowledges but whose process sends nothing (stopped, hung) is found by
# echo on links that have it (secure_tcp): a link that sends while the peer has been quiet for
# ECHO_AFTER_S asks for an echo; no byte from the peer for ECHO_TIMEOUT_S after the request
# reached its kernel makes the link silent. See links/tcp.py, _unanswered_echo.
ECHO_AFTER_S = 0.25
ECHO_TIMEOUT_S = 0.5
# legacy_tcp has no echo: a link to a smolmesh2 peer (which sends every announcement back) asks
# with an announcement of this node instead, which floods the mesh, so at most one such
# announcement goes out per ECHO_ANNOUNCE_MIN_S (Node._announce_for_echo).
ECHO_ANNOUNCE_MIN_S = 1.0
# Per-link send buffer: above the high mark data packets are dropped (announcements still go, up
# to SEND_BUFFER_MAX); a link that stays above it for STALL_TIMEOUT_S is a stalled peer and is
# closed. The table's announcements replayed to a new peer go REPLAY_SLICE_BYTES at a time while
# the buffer is under the high mark, and wait for it to drain below the low one.
SEND_BUFFER_HIGH = 2 * 1024 * 1024
SEND_BUFFER_LOW = 512 * 1024
SEND_BUFFER_MAX = 2 * SEND_BUFFER_HIGH
REPLAY_SLICE_BYTES = 256 * 1024
STALL_TIMEOUT_S = 15.0

# --- Routing ---
ANNOUNCE_MIN_S = 5.0  # each node announces itself every random 5-10 s
ANNOUNCE_MAX_S = 10.0
# After a link comes up or goes down the node announces itself again after a random wait in this
# range; link changes within it share the one announcement.
REANNOUNCE_MIN_S = 0.05
REANNOUNCE_MAX_S = 0.3
MAX_ROUTES = 65536  # addresses remembered; announcements of further addresses are ignored
# Bytes of announcements and node names the route table holds; beyond, new addresses are ignored
# as beyond MAX_ROUTES. A name may be as long as a packet (65,526 bytes), so without this bound
# 65,536 routes could hold 8 GiB. Ordinary names (up to ~100 bytes) fill MAX_ROUTES first.
MAX_ROUTE_BYTES = 16 * 1024 * 1024
# A full table warns when it first ignores an address, then at most once per this many seconds
# while it goes on ignoring them (Router._refuse_route); status counts them all.
TABLE_FULL_LOG_PERIOD_S = 60.0
ROUTE_TTL_S = 180.0  # a route not refreshed by any announcement for this long is forgotten
EXPIRE_SLICE_ROUTES = 4096  # routes looked at for expiry per maintenance tick (Router.expire)
MAINTENANCE_PERIOD_S = 1.0
# A link that goes down or silent logs a line for each of its first routes moved or lost, then one
# line that counts the rest; so does a batch of announcements for the routes it teaches or moves.
ROUTE_LINES_PER_EVENT = 16

# --- Status ---
# The status socket describes this many routes at a time between turns of the event loop (a few
# milliseconds each on a slow machine), so that a full route table does not hold up packets.
STATUS_ROUTES_PER_SLICE = 2048

# --- Data plane ---
TUN_READ_BATCH = 256  # packets read from the TUN device per wake-up
RECEIVE_QUEUE_LIMIT = 4096  # packets held for Node.receive() when there is no TUN device
DEFAULT_MTU = 32768  # chosen by measurement: see README, Performance
# ICMP errors for packets too long for a mesh packet go to the host through the TUN device, at
# most ICMP_ERROR_BURST at once and ICMP_ERRORS_PER_S a second; the rest are not sent (the packet
# is dropped all the same). These are the defaults of the config's `icmp_error_burst` and
# `icmp_errors_per_s`. 10 and 10/s are RFC 4443's example for a small device (section 2.4
# (f)). A host remembers the path MTU per destination (Linux: 10 minutes), so it needs one error
# per destination; a sender that goes on sending too-long packets would otherwise cost a Rust call
# and a TUN write each. Linux itself exempts these two errors from its own ICMP limits, as a router
# that limited them could stall path MTU discovery; here a host that misses one only retransmits.
ICMP_ERROR_BURST = 10
ICMP_ERRORS_PER_S = 10.0
# For KEEP_WARM_S after a data packet passed (the config's `keep_warm_s`), the node wakes every
# WARM_PERIOD_S and runs its packet path's Rust calls on a scratch packet (warmth.KeepWarm), so
# that the next packet of sparse traffic finds the CPU and its caches warm. 5 ms came out best of
# 2, 5, 10 and 20 ms for pings every 50 ms (README, Performance).
KEEP_WARM_S = 1.0
WARM_PERIOD_S = 0.005
