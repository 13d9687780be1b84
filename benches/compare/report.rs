//! The figures of one run and the `BENCHMARKS.md` they make: each figure beside its target.

use std::fmt::Write;
use std::time::Duration;

/// One tool round through the gateway against its parts measured directly.
pub struct ToolRound {
    pub server: String,
    /// p50 of one streamed model call, direct.
    pub model_p50: f64,
    /// p50 of one `tools/call`, direct.
    pub mcp_p50: f64,
    /// p50 of the same round through the minimal tool loop (`minimal_loop.rs`), when measured.
    pub floor_p50: Option<f64>,
    pub round_p50: f64,
    pub round_p99: f64,
}

impl ToolRound {
    fn parts(&self) -> f64 {
        2.0 * self.model_p50 + self.mcp_p50
    }
}

/// The 1,000-tool catalog measure.
#[derive(Default)]
pub struct Catalog {
    /// Tools in the gateway's catalog.
    pub listed: usize,
    /// Tools the gateway sent upstream with a request.
    pub sent_tools: usize,
    /// Size of that request.
    pub sent_bytes: usize,
    /// p50 through the gateway (which adds the tools).
    pub via_p50: f64,
    /// p50 of the same request, tools included by the client, sent direct.
    pub direct_p50: f64,
    /// p50 and p99 of a pass-through request (tools off) through a gateway with that catalog, quiet.
    pub quiet: (f64, f64),
    /// The same while its server sends `tools/list_changed` every 100 ms.
    pub churning: (f64, f64),
    /// How long ranking takes (p50, ms): the 1,000 tools against a short question, and against
    /// a 30 MB last message.
    pub ranking: (f64, f64),
}

#[derive(Default)]
pub struct Report {
    pub litellm_version: String,
    /// (path, p50 ms, p99 ms, samples, requests/s at c=16)
    pub pass_through: Vec<(String, f64, f64, usize, f64)>,
    /// (path, p50 ms, p99 ms) of the time to the first token.
    pub ttft: Vec<(String, f64, f64)>,
    pub tool_rounds: Vec<ToolRound>,
    /// (rounds/s through the gateway, rounds/s of the parts done directly, rounds/s through the
    /// minimal tool loop), c=16.
    pub rounds_c16: (f64, f64, f64),
    /// (four parallel 300 ms calls in one round, ms; one call, ms).
    pub parallel: (f64, f64),
    pub catalog: Catalog,
    pub rss_idle: f64,
    /// (streams, over HTTP/2, RSS MB)
    pub rss_streams: Vec<(usize, bool, f64)>,
    pub rss_after: f64,
    /// Instructions per pass-through request: (gateway, minimal proxy), when valgrind ran.
    pub instructions: Option<(f64, f64)>,
    /// (path, body bytes, RSS before, peak RSS) with 8 such bodies at once.
    pub bodies: Vec<(String, usize, f64, f64)>,
    /// The minimal proxy's RSS: idle, then beside each `rss_streams` row.
    pub rss_proxy: Vec<f64>,
    pub took: Duration,
}

fn cmd(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |v| v.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB RAM; Linux {}; {}",
        cmd("uname", &["-r"]),
        cmd("rustc", &["--version"])
    )
}

/// How many copies of each of the eight bodies the gateway held at its peak.
fn held(size: usize, before: f64, peak: f64) -> f64 {
    (peak - before) / (8.0 * size as f64 / 1048576.0)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    /// The performance targets set against the minimal proxy (the floor of one extra hop),
    /// each as a ratio to it measured in this run, or an absolute bound where the proxy has no
    /// such path.
    fn against_the_floor(&self) -> String {
        let mut md = String::from("## Against the floor: the minimal proxy\n\n");
        md.push_str("| path | minimal proxy | mcp-middleware | ratio | target | |\n|---|---:|---:|---:|---:|---|\n");
        let (d50, _, _) = self.path(0);
        let (p50, _, prps) = self.path(1);
        let (u50, _, urps) = self.path(2);
        let (pa, ua) = (p50 - d50, u50 - d50);
        let _ = writeln!(
            md,
            "| pass-through added p50 (c=1) | {pa:+.3} ms | {ua:+.3} ms | {:.2}× | ≤ 1.25× | {} |",
            ua / pa,
            met(ua <= 1.25 * pa)
        );
        let (tp, tu) = self.ttft_added();
        let _ = writeln!(
            md,
            "| streaming: time to first token added | {tp:+.3} ms | {tu:+.3} ms | {:.2}× | ≤ 1.5× | {} |",
            tu / tp,
            met(tu <= 1.5 * tp)
        );
        let _ = writeln!(
            md,
            "| throughput c=16 | {:.1} k/s | {:.1} k/s | {:.2}× | ≥ 0.85× | {} |",
            prps / 1000.0,
            urps / 1000.0,
            urps / prps,
            met(urps >= 0.85 * prps)
        );
        if let Some((ours, proxy)) = self.instructions {
            let _ = writeln!(
                md,
                "| instructions per pass-through request (callgrind) | {:.1} k | {:.1} k | {:.2}× | ≤ 1.5× | {} |",
                proxy / 1000.0,
                ours / 1000.0,
                ours / proxy,
                met(ours <= 1.5 * proxy)
            );
        }
        let proxy_idle = self.rss_proxy.first().copied().unwrap_or(f64::NAN);
        if let Some((i, (n, _, rss))) = self.rss_streams.iter().enumerate().next_back() {
            let per = (rss - self.rss_idle) * 1024.0 / *n as f64;
            let proxy_per = (self.rss_proxy.get(i + 1).copied().unwrap_or(f64::NAN) - proxy_idle) * 1024.0 / *n as f64;
            let _ = writeln!(
                md,
                "| memory per open stream ({n} streams) | {proxy_per:.1} KB | {per:.1} KB | {:.2}× | ≤ 1.15× | {} |",
                per / proxy_per,
                met(per <= 1.15 * proxy_per)
            );
        }
        if let Some(r) = self.tool_rounds.first() {
            let beyond = r.round_p50 - r.parts();
            let floor = r.floor_p50.map_or(f64::NAN, |f| f - r.parts());
            let _ = writeln!(
                md,
                "| tool round beyond its parts, {} (floor: the minimal tool loop) | {floor:+.3} ms | {beyond:+.3} ms | {} | ≤ 0.10 ms | {} |",
                r.server,
                if floor > 0.0 { format!("{:.2}×", beyond / floor) } else { "–".into() },
                met(beyond <= 0.1)
            );
        }
        let (via, ceiling, via_floor) = self.rounds_c16;
        let _ = writeln!(
            md,
            "| tool rounds/s at c=16 against the parts' ceiling (floor: the minimal tool loop) | {:.0} % | {:.0} % | {:.2}× | ≥ 60 % | {} |",
            100.0 * via_floor / ceiling,
            100.0 * via / ceiling,
            via / via_floor,
            met(via >= 0.6 * ceiling)
        );
        if let Some((_, size, before, peak)) = self.bodies.get(1) {
            let held = held(*size, *before, *peak);
            let _ = writeln!(
                md,
                "| a {:.0} MB body in the tool loop, held | – | {held:.2}× | – | ≤ 1.3× | {} |",
                *size as f64 / 1048576.0,
                met(held <= 1.3)
            );
        }
        let c = &self.catalog;
        let _ = writeln!(
            md,
            "| pass-through p99 while a 1,000-tool server sends `list_changed` every 100 ms | – | {:.3} ms (quiet {:.3} ms) | {:.2}× | ≤ 1.10× | {} |",
            c.churning.1,
            c.quiet.1,
            c.churning.1 / c.quiet.1,
            met(c.churning.1 <= 1.1 * c.quiet.1)
        );
        let _ = writeln!(
            md,
            "| ranking 1,000 tools for a 30 MB last message | – | {:.3} ms | – | ≤ 5 ms | {} |\n",
            c.ranking.1,
            met(c.ranking.1 <= 5.0)
        );
        md
    }

    /// Time to first token added (p50, ms) by the minimal proxy and by the gateway.
    fn ttft_added(&self) -> (f64, f64) {
        let p50 = |i: usize| self.ttft.get(i).map_or(f64::NAN, |t| t.1);
        (p50(1) - p50(0), p50(2) - p50(0))
    }

    fn path(&self, i: usize) -> (f64, f64, f64) {
        self.pass_through.get(i).map_or((f64::NAN, f64::NAN, f64::NAN), |p| (p.1, p.2, p.4))
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let date = cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `cargo bench --bench compare` (it installs the pinned LiteLLM and the npm MCP \
             servers when missing, builds the release binaries and rewrites this file) on {date}, in {:.0} s.\n",
            self.took.as_secs_f64()
        );
        let _ = writeln!(md, "Machine: {}.\n", machine());
        let _ = writeln!(
            md,
            "Every path talks to the same scripted model (an OpenAI-compatible server in its own process) \
             over loopback; the gateway, the minimal proxy and LiteLLM each run as their own process too, and \
             one load generator (hyper, HTTP/1.1 keep-alive, one request at a time per connection) drives \
             them all. Figures are p50/p99 of sequential requests (c=1) or completed requests per second over \
             4 s with 16 connections (c=16). Baselines are measured in the same run; targets are stated as \
             differences or ratios against them, because this 2-core machine is shared and noisy. LiteLLM \
             runs with one worker and no database.\n"
        );

        let (d50, d99, drps) = self.path(0);
        let (p50, _, _) = self.path(1);
        let (u50, u99, urps) = self.path(2);
        let _ = writeln!(md, "## Pass-through chat completion (non-streaming, no tools)\n");
        let _ = writeln!(
            md,
            "Latencies here and for the first token are taken in ten rounds, each visiting every path in turn \
             (a fresh keep-alive connection per block), and throughput in four such rounds of one second, so the \
             machine's drift weighs on every path alike.\n"
        );
        let _ = writeln!(md, "| path | p50 c=1 | p99 c=1 | added p50 | added p99 | samples | req/s c=16 | of direct |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (name, p50, p99, n, rps) in &self.pass_through {
            let _ = writeln!(
                md,
                "| {name} | {p50:.3} ms | {p99:.3} ms | {:+.3} ms | {:+.3} ms | {n} | {rps:.0} | {:.0} % |",
                p50 - d50,
                p99 - d99,
                100.0 * rps / drps
            );
        }
        let _ = writeln!(
            md,
            "\nAt c=16 the load generator and the model already use both cores of this machine, so any extra \
             process on the path takes throughput: the minimal proxy keeps {:.0} % of direct, mcp-middleware \
             {:.0} % of direct, which is {:.0} % of the minimal proxy's.",
            100.0 * self.path(1).2 / drps,
            100.0 * urps / drps,
            100.0 * urps / self.path(1).2
        );
        match self.instructions {
            Some((ours, proxy)) => {
                let _ = writeln!(
                    md,
                    "\nInstructions per pass-through request (callgrind, start-up excluded; stable where times are \
                     not): mcp-middleware {:.1}k, the minimal proxy {:.1}k ({:.1}×).",
                    ours / 1000.0,
                    proxy / 1000.0,
                    ours / proxy
                );
            }
            None => {
                let _ = writeln!(md, "\nInstructions per request: not measured (valgrind could not be installed).");
            }
        }
        let _ = writeln!(md, "\n## Streaming: time to first token\n");
        let _ = writeln!(
            md,
            "The model pauses 20 ms after its first token, so each request starts on parked threads and idle \
             CPUs. [docs/performance.md](docs/performance.md) splits the gap by phase: the gateway's checks run \
             cold, and the upstream's own answer depends on how long its CPU was idle.\n"
        );
        let _ = writeln!(md, "| path | p50 | p99 | added p50 |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        let t0 = self.ttft.first().map_or(f64::NAN, |t| t.1);
        for (name, p50, p99) in &self.ttft {
            let _ = writeln!(md, "| {name} | {p50:.3} ms | {p99:.3} ms | {:+.3} ms |", p50 - t0);
        }
        let _ = writeln!(md, "\n## One tool round against the sum of its parts\n");
        let _ = writeln!(
            md,
            "A streamed chat in which the model calls one `echo` tool, through the gateway, against two \
             streamed model calls and one MCP `tools/call` made directly (p50 each).\n"
        );
        let _ = writeln!(
            md,
            "| MCP server | model call | MCP call | sum of parts | round p50 | round p99 | beyond parts |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.tool_rounds {
            let _ = writeln!(
                md,
                "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:+.3} ms |",
                r.server,
                r.model_p50,
                r.mcp_p50,
                r.parts(),
                r.round_p50,
                r.round_p99,
                r.round_p50 - r.parts()
            );
        }
        if let Some((r, floor)) = self.tool_rounds.first().and_then(|r| Some((r, r.floor_p50?))) {
            let _ = writeln!(
                md,
                "\nThe floor of a round: a minimal tool loop on hyper (`benches/compare/minimal_loop.rs`, its own \
                 process) adds the tool definitions the gateway sent for the same chat, sends the chat upstream, parses the streamed answer's events \
                 for the call, calls the tool with rmcp, appends the call and its result, and relays the second \
                 answer's bytes; nothing else. The same round through it, in blocks interleaved with the \
                 gateway's: {floor:.3} ms p50 ({:+.3} ms beyond the parts; the gateway {:+.3} ms).",
                floor - r.parts(),
                r.round_p50 - r.parts()
            );
        }
        let (via, ceiling, via_floor) = self.rounds_c16;
        let _ = writeln!(
            md,
            "\nAt c=16 with mcp-test-server: {via:.0} rounds/s through the gateway and {via_floor:.0} through the \
             minimal tool loop; the same parts done directly by 16 workers (model call, MCP call, model call) \
             reach {ceiling:.0} rounds/s ({:.0} % and {:.0} %).\n",
            100.0 * via / ceiling,
            100.0 * via_floor / ceiling
        );
        let (four, one) = self.parallel;
        let _ = writeln!(
            md,
            "Four 300 ms tool calls in one round run in parallel: the whole chat takes {four:.0} ms \
             (one call: {one:.0} ms).\n"
        );
        let c = &self.catalog;
        let _ = writeln!(md, "## A 1,000-tool catalog\n");
        let _ = writeln!(
            md,
            "{} tools in the catalog; the gateway chose {} of them for the request ({:.0} KB sent upstream). \
             p50 through the gateway: {:.3} ms; the same {:.0} KB request sent direct: {:.3} ms; added: {:+.3} ms.\n",
            c.listed,
            c.sent_tools,
            c.sent_bytes as f64 / 1024.0,
            c.via_p50,
            c.sent_bytes as f64 / 1024.0,
            c.direct_p50,
            c.via_p50 - c.direct_p50
        );
        let _ = writeln!(
            md,
            "A pass-through request (tools off) through a gateway with that catalog: p50 {:.3} ms, p99 {:.3} ms with \
             the catalog quiet; p50 {:.3} ms, p99 {:.3} ms while its server changes a tool and sends \
             `tools/list_changed` every 100 ms (listed again at most once a second and 100 times a listing's time apart; \
             the catalog rebuilt off the request threads, unchanged tools kept). Quiet and churning alternate in ten pairs of 1-second blocks on one \
             gateway.\n",
            c.quiet.0, c.quiet.1, c.churning.0, c.churning.1
        );
        let _ = writeln!(
            md,
            "Ranking the 1,000 tools against the conversation: {:.3} ms for a short question, {:.3} ms when the \
             last message is 30 MB (its last {} KiB weigh).\n",
            c.ranking.0,
            c.ranking.1,
            mcp_middleware::agent::selection::RANKED_LAST_USER_BYTES / 1024
        );
        let _ = writeln!(md, "## Memory (resident set of the gateway process)\n");
        let _ = writeln!(md, "| state | mcp-middleware | per stream | minimal hyper proxy | per stream |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        let proxy_idle = self.rss_proxy.first().copied().unwrap_or(f64::NAN);
        let _ = writeln!(md, "| idle | {:.1} MB | | {proxy_idle:.1} MB | |", self.rss_idle);
        for (i, (n, h2, rss)) in self.rss_streams.iter().enumerate() {
            let how = if *h2 { "over HTTP/2, 100 per connection" } else { "over HTTP/1.1, one connection each" };
            let per = (rss - self.rss_idle) * 1024.0 / *n as f64;
            let proxy = self.rss_proxy.get(i + 1).copied().unwrap_or(f64::NAN);
            let proxy_per = (proxy - proxy_idle) * 1024.0 / *n as f64;
            let _ = writeln!(
                md,
                "| {n} streams open, {how} | {rss:.1} MB | {per:.1} KB | {proxy:.1} MB | {proxy_per:.1} KB |"
            );
        }
        let _ = writeln!(md, "| after they closed | {:.1} MB | | | |\n", self.rss_after);
        let _ = writeln!(
            md,
            "Streams are held open by the model (its first token sent, the rest withheld). Each HTTP/1.1 \
             stream holds two sockets in the gateway; a process on this machine may hold 20,000 files and \
             cannot raise that without privileges, so the 10,000 streams come in over HTTP/2 (the gateway \
             still holds one upstream connection per stream).\n"
        );

        let _ = writeln!(md, "## Large bodies\n");
        let _ = writeln!(
            md,
            "Eight chat requests of {:.0} MB each at once (one long user message).\n",
            self.bodies.first().map_or(0.0, |b| b.1 as f64 / 1048576.0)
        );
        let _ = writeln!(md, "| path | RSS before | peak RSS | added | bodies held |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (name, size, before, peak) in &self.bodies {
            let held = held(*size, *before, *peak);
            let _ = writeln!(md, "| {name} | {before:.1} MB | {peak:.1} MB | {:.1} MB | {held:.2}× |", peak - before);
        }
        let _ = writeln!(md);

        md.push_str(&self.against_the_floor());
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | figure | |");
        let _ = writeln!(md, "|---|---|---|");
        let added50 = u50 - d50;
        let added99 = u99 - d99;
        let proxy_added = p50 - d50;
        let _ = writeln!(md, "| added latency p50 ≤ 0.04 ms (c=1) | {added50:+.3} ms | {} |", met(added50 <= 0.04));
        let _ = writeln!(md, "| added latency p99 ≤ 0.15 ms (c=1) | {added99:+.3} ms | {} |", met(added99 <= 0.15));
        let _ = writeln!(
            md,
            "| added p50 within 2× of the minimal proxy's ({proxy_added:+.3} ms) | {:.1}× | {} |",
            added50 / proxy_added,
            met(added50 <= 2.0 * proxy_added)
        );
        let _ = writeln!(
            md,
            "| throughput c=16 ≥ 90 % of direct | {:.0} % | {} |",
            100.0 * urps / drps,
            met(urps >= 0.9 * drps)
        );
        let (tp, tu) = self.ttft_added();
        let _ = writeln!(
            md,
            "| time to first token added within 2× of the minimal proxy's ({tp:+.3} ms) | {tu:+.3} ms | {} |",
            met(tu <= 2.0 * tp.max(0.0))
        );
        for r in &self.tool_rounds {
            let beyond = r.round_p50 - r.parts();
            let _ = writeln!(
                md,
                "| tool round beyond its parts ≤ 0.1 ms p50, {} | {beyond:+.3} ms | {} |",
                r.server,
                met(beyond <= 0.1)
            );
        }
        let _ = writeln!(
            md,
            "| tool rounds at c=16 limited by model and tool: ≥ 90 % of the parts' ceiling | {:.0} % | {} |",
            100.0 * via / ceiling,
            met(via >= 0.9 * ceiling)
        );
        let _ = writeln!(
            md,
            "| four parallel slow calls ≤ 1.2× one call | {:.2}× | {} |",
            four / one,
            met(four <= 1.2 * one)
        );
        let _ = writeln!(md, "| idle RSS ≤ 15 MB | {:.1} MB | {} |", self.rss_idle, met(self.rss_idle <= 15.0));
        if let Some((n, _, rss)) = self.rss_streams.last() {
            let _ = writeln!(md, "| {n} concurrent streams ≤ 300 MB | {rss:.1} MB | {} |", met(*rss <= 300.0));
        }
        for (name, size, before, peak) in &self.bodies {
            let held = held(*size, *before, *peak);
            let _ =
                writeln!(md, "| a large body is held about once (≤ 2×), {name} | {held:.2}× | {} |", met(held <= 2.0));
        }
        let catalog_added = c.via_p50 - c.direct_p50;
        let _ = writeln!(
            md,
            "| injecting a 1,000-tool catalog adds ≤ 1 ms p50 | {catalog_added:+.3} ms | {} |",
            met(catalog_added <= 1.0)
        );
        let _ = writeln!(
            md,
            "| pass-through p99 with the catalog churning within 10 % of quiet | {:.3} vs {:.3} ms | {} |",
            c.churning.1,
            c.quiet.1,
            met(c.churning.1 <= 1.1 * c.quiet.1)
        );
        let _ = writeln!(
            md,
            "| ranking a 30 MB last message ≤ 5 ms | {:.3} ms | {} |",
            c.ranking.1,
            met(c.ranking.1 <= 5.0)
        );
        md
    }
}
