//! Hostile game servers: every reply a server can send must leave the probe within its deadline
//! and a bounded amount of memory, reporting down (or starting), never panicking.
//!
//! The servers are written here (loopback, std threads). Memory is measured with a counting
//! global allocator: the peak of live heap bytes while one probe runs, minus what was live before
//! it. Tests in this binary run one at a time (a mutex) so the peak belongs to one probe.

use node_agent::sources::probe::{self, ErrorKind, Limits, Protocol, State};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Memory a probe may use: its receive buffers (64 KiB for UDP) and the 256 KiB frame cap, with
/// room for the runtime. Orders of magnitude below what the hostile servers announce.
const MEMORY_BOUND: usize = 2 * 1024 * 1024;
/// Generous slack over the probe deadline (a loaded 2-core CI machine).
const SLACK: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits::from_timeout(Duration::from_secs(3))
}

/// Runs one probe on a fresh runtime; returns the result, the time it took and the peak of heap
/// bytes it added.
fn run_probe(
    p: Protocol,
    addr: SocketAddr,
    limits: &Limits,
) -> (Result<probe::Status, probe::ProbeError>, Duration, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let r = rt.block_on(probe::probe(p, "127.0.0.1", addr, limits));
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (r, took, peak)
}

fn assert_bounded(
    what: &str,
    r: &Result<probe::Status, probe::ProbeError>,
    took: Duration,
    peak: usize,
    limits: &Limits,
) {
    assert!(r.is_err(), "{what}: hostile server accepted: {r:?}");
    assert!(
        took < limits.total + SLACK,
        "{what}: took {took:?}, deadline {:?}",
        limits.total
    );
    assert!(peak < MEMORY_BOUND, "{what}: peak heap {peak} bytes");
    eprintln!(
        "{what}: {} after {:.2} s, peak heap +{} KiB",
        r.as_ref().unwrap_err(),
        took.as_secs_f64(),
        peak / 1024
    );
}

/// A TCP server that runs `serve` for every connection, on its own thread.
fn tcp_server(serve: fn(std::net::TcpStream)) -> (SocketAddr, Stop) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Stop::new();
    let flag = stop.0;
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || serve(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (addr, stop)
}

/// How a UDP server answers one datagram (0..n datagrams); the u32 is its state.
type Reply = fn(&[u8], &mut u32) -> Vec<Vec<u8>>;

/// A UDP server answering every datagram with what `reply` returns.
fn udp_server(reply: Reply) -> (SocketAddr, Stop, &'static AtomicUsize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = s.local_addr().unwrap();
    let stop = Stop::new();
    let flag = stop.0;
    let received: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut state = 0u32;
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                received.fetch_add(1, Ordering::Relaxed);
                for d in reply(&buf[..n], &mut state) {
                    let _ = s.send_to(&d, from);
                }
            }
        }
    });
    (addr, stop, received)
}

/// Stops a server thread when dropped.
struct Stop(&'static AtomicBool);
impl Stop {
    fn new() -> Self {
        Stop(Box::leak(Box::new(AtomicBool::new(false))))
    }
}
impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn read_some(s: &mut std::net::TcpStream) {
    let mut b = [0u8; 512];
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.read(&mut b);
}

#[test]
fn java_frame_length_of_2_gib() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 0x7fffffff as a 5-byte VarInt, then bytes forever.
    let (addr, _stop) = tcp_server(|mut s| {
        read_some(&mut s);
        let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..256 {
            if s.write_all(&junk).is_err() {
                return;
            }
        }
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
    assert_bounded("2 GiB frame", &r, took, peak, &l);
    assert_eq!(r.unwrap_err().kind.state(), State::Down);
}

#[test]
fn java_frame_just_over_the_cap_is_refused_before_reading_it() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 2,097,151 bytes announced (the widest legal frame), over the 256 KiB cap.
    let (addr, _stop) = tcp_server(|mut s| {
        read_some(&mut s);
        let _ = s.write_all(&[0xff, 0xff, 0x7f]);
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..32 {
            if s.write_all(&junk).is_err() {
                return;
            }
        }
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftLegacy, addr, &l);
    assert_bounded("2 MiB frame (legacy ask)", &r, took, peak, &l);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(probe::java::probe(addr, "127.0.0.1", &l))
        .unwrap_err();
    assert!(matches!(e, ErrorKind::TooLarge { .. }), "{e:?}");
}

#[test]
fn java_json_of_10_mb() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A frame within 21 bits whose JSON string claims 10 MB, then 10 MB of JSON.
    let (addr, _stop) = tcp_server(|mut s| {
        read_some(&mut s);
        let mut head = vec![0x80, 0x80, 0x40, 0x00]; // frame 1 MiB, packet id 0
        head.extend_from_slice(&[0x80, 0xad, 0xe2, 0x04]); // JSON length 10,000,000
        head.extend_from_slice(br#"{"description":""#);
        let _ = s.write_all(&head);
        let junk = vec![b'a'; 64 * 1024];
        for _ in 0..160 {
            if s.write_all(&junk).is_err() {
                return;
            }
        }
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
    assert_bounded("10 MB JSON", &r, took, peak, &l);
    // Even with the cap raised to the 21-bit ceiling, the memory stays bounded by that cap.
    let wide = Limits {
        frame_cap: probe::FRAME_CAP_CEILING,
        json_cap: probe::FRAME_CAP_CEILING,
        ..limits()
    };
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &wide);
    assert!(r.is_err());
    assert!(took < wide.total + SLACK);
    assert!(
        peak < 2 * probe::FRAME_CAP_CEILING + MEMORY_BOUND,
        "peak {peak}"
    );
}

#[test]
fn java_drip_one_byte_a_second() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop) = tcp_server(|mut s| {
        read_some(&mut s);
        let json = br#"{"players":{"max":20,"online":5}}"#;
        let mut frame = vec![(json.len() + 2) as u8, 0x00, json.len() as u8];
        frame.extend_from_slice(json);
        for b in frame {
            if s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
    assert_bounded("drip", &r, took, peak, &l);
    assert_eq!(r.unwrap_err().kind, ErrorKind::Timeout("(whole probe)"));
}

#[test]
fn java_silent_server_times_out_down() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop) = tcp_server(|mut s| {
        read_some(&mut s);
        std::thread::sleep(Duration::from_secs(20));
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
    assert_bounded("silent", &r, took, peak, &l);
    assert_eq!(r.unwrap_err().kind.state(), State::Down);
}

#[test]
fn accepted_then_closed_with_no_bytes_is_starting() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop) = tcp_server(drop);
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
    assert_bounded("closed empty", &r, took, peak, &l);
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClosedEmpty);
    assert_eq!(e.kind.state(), State::Starting);
}

#[test]
fn java_garbage_and_truncated_frames() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for serve in [
        (|mut s: std::net::TcpStream| {
            read_some(&mut s);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }) as fn(std::net::TcpStream),
        |mut s| {
            read_some(&mut s);
            let _ = s.write_all(&[0x40, 0x00, 0x3e, b'{']); // frame of 64, then EOF
        },
        |mut s| {
            read_some(&mut s);
            let _ = s.write_all(&[0x05, 0x07, 0x01, 0x02, 0x03, 0x04]); // wrong packet id
            std::thread::sleep(Duration::from_secs(5));
        },
        |mut s| {
            read_some(&mut s);
            let _ = s.write_all(&[0x06, 0x00, 0x04, b'n', b'u', b'l', b'!']); // not JSON
            std::thread::sleep(Duration::from_secs(5));
        },
    ] {
        let (addr, _stop) = tcp_server(serve);
        let l = limits();
        let (r, took, peak) = run_probe(Protocol::MinecraftJava, addr, &l);
        assert_bounded("garbage frame", &r, took, peak, &l);
        assert_eq!(r.unwrap_err().kind.state(), State::Down);
    }
}

#[test]
fn a2s_endless_challenges_are_bounded() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop, received) = udp_server(|_, n| {
        *n += 1;
        let mut d = vec![0xff, 0xff, 0xff, 0xff, 0x41];
        d.extend_from_slice(&n.to_le_bytes());
        vec![d]
    });
    let l = limits();
    let (r, took, peak) = run_probe(Protocol::SourceA2s, addr, &l);
    assert_bounded("endless challenges", &r, took, peak, &l);
    assert_eq!(r.unwrap_err().kind, ErrorKind::ChallengeLoop(2));
    assert_eq!(
        received.load(Ordering::Relaxed),
        3,
        "1 request + 2 challenge rounds"
    );
}

#[test]
fn udp_garbage_truncated_and_floods() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cases: [(Protocol, Reply); 6] = [
        // Bedrock: pong echoing our nonce, cut short.
        (Protocol::MinecraftBedrock, |d, _| {
            let mut p = vec![0x1c];
            p.extend_from_slice(d.get(1..9).unwrap_or_default());
            p.extend_from_slice(&[0; 8]);
            p.extend_from_slice(&node_agent::sources::probe::bedrock::MAGIC);
            p.extend_from_slice(&[0xff, 0xff, b'M']); // claims 65535 bytes, sends 1
            vec![p]
        }),
        // Bedrock: a flood of garbage datagrams.
        (Protocol::MinecraftBedrock, |_, _| {
            (0..200).map(|i| vec![i as u8; 1 + i % 700]).collect()
        }),
        // Query: a handshake reply with a non-numeric token, for the right session.
        (Protocol::MinecraftQuery, |d, _| {
            let mut p = vec![0x09];
            p.extend_from_slice(d.get(3..7).unwrap_or_default());
            p.extend_from_slice(b"not-a-number\0");
            vec![p]
        }),
        // Query: a valid token, then a truncated full stat for the right session.
        (Protocol::MinecraftQuery, |d, _| {
            let mut p = vec![d.get(2).copied().unwrap_or(0)];
            p.extend_from_slice(d.get(3..7).unwrap_or_default());
            if d.get(2) == Some(&9) {
                p.extend_from_slice(b"12345\0");
            } else {
                p.extend_from_slice(b"splitnum\0\x80\0hostname\0unterminat");
            }
            vec![p]
        }),
        // A2S: a truncated info reply.
        (Protocol::SourceA2s, |_, _| {
            vec![b"\xff\xff\xff\xffI\x11name\0map\0fold".to_vec()]
        }),
        // A2S: a split reply announcing 255 parts.
        (Protocol::SourceA2s, |_, _| {
            vec![b"\xfe\xff\xff\xff\x01\x00\x00\x00\xff\x00\xe0\x04".to_vec()]
        }),
    ];
    for (p, reply) in cases {
        let (addr, _stop, _) = udp_server(reply);
        let l = limits();
        let (r, took, peak) = run_probe(p, addr, &l);
        assert_bounded(p.name(), &r, took, peak, &l);
        assert_eq!(r.unwrap_err().kind.state(), State::Down);
    }
}

#[test]
fn udp_silence_times_out_within_the_deadline() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop, received) = udp_server(|_, _| Vec::new());
    for p in [
        Protocol::MinecraftBedrock,
        Protocol::MinecraftQuery,
        Protocol::SourceA2s,
    ] {
        let l = limits();
        let (r, took, peak) = run_probe(p, addr, &l);
        assert_bounded(p.name(), &r, took, peak, &l);
    }
    assert!(received.load(Ordering::Relaxed) >= 3);
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MOST_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// `probe_concurrency` caps the probes in flight: six slow targets, a cap of 2, and the server
/// never sees more than 2 connections at once.
#[test]
fn concurrency_cap_holds() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (addr, _stop) = tcp_server(|mut s| {
        CONNECTIONS.fetch_add(1, Ordering::SeqCst);
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
        read_some(&mut s);
        std::thread::sleep(Duration::from_millis(300));
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        // Closing after the count drops, so the client cannot start its next probe first.
        drop(s);
    });
    let mut toml = String::new();
    for i in 0..6 {
        toml += &format!(
            "[[static_targets]]\nname = \"t{i}\"\naddress = \"127.0.0.1\"\nport = {}\nprotocol = \"minecraft-legacy\"\n",
            addr.port()
        );
    }
    let cfg = node_agent::sources::probe::targets::ProbeConfig::from_tables(&toml.parse().unwrap())
        .unwrap();
    let mut prober = node_agent::sources::probe::prober::Prober::new(cfg, limits(), None, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let results = rt.block_on(prober.pass(&[]));
    assert_eq!(results.len(), 6);
    assert!(
        results.iter().all(|r| r.state == State::Starting),
        "{results:?}"
    );
    assert_eq!(CONNECTIONS.load(Ordering::SeqCst), 6);
    let most = MOST_IN_FLIGHT.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} probes in flight at once");
}
