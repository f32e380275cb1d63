//! The test kit against real Redis and Memcached processes: the promises the
//! backends' tests build on.

use std::{
    env,
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use session_conformance::testkit::{
    MemcachedServer, RedisCluster, RedisSentinel, RedisServer, RedisTls,
};

/// Set in a copy of this test binary to the part the copy plays (see
/// [`play_child_role`]).
const ROLE_ENV: &str = "SESSION_KIT_TESTKIT_ROLE";

/// How the child that owns a server tells its parent where the server is.
const OWNER_LINE: &str = "testkit-owner:";

#[test]
fn a_server_stores_values_dies_when_killed_and_restarts_on_its_port() {
    let mut server = RedisServer::start();
    server.cli(&["set", "k", "v"]);
    assert_eq!(server.cli(&["get", "k"]), "v");

    let port = server.port();
    server.kill();
    assert!(!server.is_running());
    assert!(refuses_connections(port));

    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_eq!(server.cli(&["ping"]), "PONG");
}

#[test]
fn a_paused_server_accepts_connections_but_answers_only_once_resumed() {
    let mut server = RedisServer::start();

    server.pause();
    assert!(server.is_running());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, server.port())).is_ok());
    assert!(!server.answers_ping(Duration::from_millis(300)));

    server.resume();
    assert!(server.answers_ping(Duration::from_secs(1)));
}

#[test]
fn a_paused_server_can_be_killed() {
    let mut server = RedisServer::start();
    server.pause();

    server.kill();

    assert!(!server.is_running());
    assert!(refuses_connections(server.port()));
}

#[test]
#[should_panic(expected = "its port was taken by another process")]
fn a_restart_on_a_port_taken_meanwhile_panics() {
    let mut server = RedisServer::start();
    server.kill();
    let _squatter =
        TcpListener::bind((Ipv4Addr::LOCALHOST, server.port())).expect("the port is free");

    server.restart();
}

#[test]
fn dropping_a_server_kills_it_and_removes_its_folder() {
    let server = RedisServer::start();
    let (port, folder) = (server.port(), server.folder().to_owned());

    drop(server);

    assert!(refuses_connections(port));
    assert!(!folder.exists());
}

#[test]
fn a_server_dies_with_the_test_process_that_owns_it() {
    if play_child_role() {
        return;
    }
    let mut owner = Command::new(env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "a_server_dies_with_the_test_process_that_owns_it",
            "--nocapture",
        ])
        .env(ROLE_ENV, "own-a-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary starts again");
    let (port, folder) = read_owner_line(&mut owner);

    // SIGKILL: no destructor runs, and the server is in a static anyway.
    owner.kill().expect("the owner can be killed");
    owner.wait().expect("the owner is reaped");

    let server_is_gone = || refuses_connections(port) && !folder.exists();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server_is_gone() {
        assert!(
            Instant::now() < deadline,
            "the server on port {port} outlived its owner by 10 s (folder {})",
            folder.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_redis_server_fails_with_the_command_that_installs_it() {
    if play_child_role() {
        return;
    }
    let said = failure_without_path(
        "a_missing_redis_server_fails_with_the_command_that_installs_it",
        "start-without-path",
    );

    assert!(
        said.contains(
            "redis-server not found on PATH; install it with: sudo apt-get install -y redis-server"
        ),
        "{said}"
    );
}

#[test]
fn a_missing_memcached_fails_with_the_command_that_installs_it() {
    if play_child_role() {
        return;
    }
    let said = failure_without_path(
        "a_missing_memcached_fails_with_the_command_that_installs_it",
        "start-memcached-without-path",
    );

    assert!(
        said.contains(
            "memcached not found on PATH; install it with: sudo apt-get install -y memcached"
        ),
        "{said}"
    );
}

/// Runs `test` alone in a copy of this binary, playing `role` with an empty
/// `PATH`; checks that it failed and returns all it said.
fn failure_without_path(test: &str, role: &str) -> String {
    let output = Command::new(env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture"])
        .env(ROLE_ENV, role)
        .env("PATH", "/nonexistent")
        .output()
        .expect("the test binary starts again");
    assert!(!output.status.success(), "the {role} child succeeded");
    (String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout)).into_owned()
}

/// In a copy of this binary started by one of the tests here, plays
/// the child's part, chosen by [`ROLE_ENV`], and answers true; in a normal
/// run answers false at once, and the test plays the parent.
fn play_child_role() -> bool {
    match env::var(ROLE_ENV).as_deref() {
        Ok("own-a-server") => {
            // As the backends' tests will hold one: never dropped.
            static SERVER: OnceLock<RedisServer> = OnceLock::new();
            let server = SERVER.get_or_init(RedisServer::start);
            println!(
                "{OWNER_LINE} {} {}",
                server.port(),
                server.folder().display()
            );
            // The parent kills this process long before.
            thread::sleep(Duration::from_secs(60));
        }
        Ok("start-without-path") => drop(RedisServer::start()),
        Ok("start-memcached-without-path") => drop(MemcachedServer::start()),
        _ => return false,
    }
    true
}

#[test]
fn start_with_passes_extra_arguments_to_the_server() {
    let server = RedisServer::start_with(&["--maxmemory", "1mb"]);

    assert_eq!(
        server.cli(&["config", "get", "maxmemory"]),
        "maxmemory\n1048576"
    );
}

#[test]
fn servers_started_at_once_get_ports_of_their_own() {
    let servers: Vec<RedisServer> = thread::scope(|scope| {
        let starts: Vec<_> = (0..6).map(|_| scope.spawn(RedisServer::start)).collect();
        starts
            .into_iter()
            .map(|start| start.join().expect("a server starts"))
            .collect()
    });

    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
    assert!(servers.iter().all(|server| server.cli(&["ping"]) == "PONG"));
}

#[test]
fn the_kit_works_inside_a_tokio_runtime() {
    let reply = session_conformance::block_on(async {
        let server = RedisServer::start();
        server.cli(&["ping"])
    });

    assert_eq!(reply, "PONG");
}

#[test]
#[should_panic(expected = "unknown command")]
fn cli_panics_on_an_error_reply() {
    RedisServer::start().cli(&["no-such-command"]);
}

#[test]
#[should_panic(expected = "Bad directive or wrong number of arguments")]
fn a_server_that_cannot_start_panics_with_its_log() {
    let _ = RedisServer::start_with(&["--no-such-directive", "x"]);
}

#[test]
fn sentinels_promote_the_replica_when_the_master_is_killed() {
    let started = Instant::now();
    let mut group = RedisSentinel::start();
    eprintln!("RedisSentinel::start took {:?}", started.elapsed());

    let master = group.master_port();
    assert_eq!(role(group.server(master)), "master");
    let written = group.server(master);
    written.cli(&["set", "k", "v"]);
    assert_eq!(
        written.cli(&["wait", "1", "5000"]),
        "1",
        "the replica acknowledges"
    );

    let failover = Instant::now();
    let killed = group.kill_master();
    let promoted = group.wait_for_new_master(killed, Duration::from_secs(15));
    eprintln!("the failover took {:?}", failover.elapsed());

    assert_eq!(killed, master);
    assert_ne!(promoted, killed);
    assert_eq!(role(group.server(promoted)), "master");
    assert_eq!(group.server(promoted).cli(&["get", "k"]), "v");
    assert_eq!(group.master_port(), promoted);
}

#[test]
fn a_cluster_spreads_keys_over_its_three_nodes() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start();
    eprintln!("RedisCluster::start took {:?}", started.elapsed());
    assert_eq!(cluster.seed_urls().len(), 3);

    let seed = &cluster.nodes()[0];
    let keys: Vec<String> = (0..12).map(|i| format!("key:{i}")).collect();
    for key in &keys {
        seed.cli(&["-c", "set", key, key]);
    }
    for key in &keys {
        assert_eq!(seed.cli(&["-c", "get", key]), *key);
    }

    let per_node: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|node| node.cli(&["dbsize"]).parse().expect("DBSIZE is a number"))
        .collect();
    assert!(per_node.iter().all(|&count| count > 0), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<u64>(), 12);
}

#[test]
fn a_memcached_server_answers_on_its_address() {
    let server = MemcachedServer::start();

    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert!(server.is_running());
    assert!(server.answers(Duration::from_secs(1)));
    assert!(memcached(&server.addr(), "version\r\n", "\r\n").starts_with("VERSION "));
}

#[test]
fn memcached_start_with_passes_extra_arguments_to_the_server() {
    let server = MemcachedServer::start_with(&["-I", "2m", "-m", "8"]);

    let settings = server.stats_settings();
    assert_eq!(settings["item_size_max"], "2097152");
    assert_eq!(settings["maxbytes"], "8388608");
    assert_eq!(settings["udpport"], "0");
}

#[test]
fn memcached_stats_count_the_commands_it_served() {
    let server = MemcachedServer::start();
    let addr = server.addr();

    memcached(&addr, "set k 0 0 1\r\nv\r\n", "STORED\r\n");
    memcached(&addr, "get k\r\n", "END\r\n");
    memcached(&addr, "get absent\r\n", "END\r\n");
    memcached(&addr, "touch k 60\r\n", "TOUCHED\r\n");
    memcached(&addr, "delete k\r\n", "DELETED\r\n");
    memcached(&addr, "delete k\r\n", "NOT_FOUND\r\n");

    let stats = server.stats();
    let count = |name: &str| stats[name].parse::<u64>().expect("a counter");
    assert_eq!(count("cmd_set"), 1);
    assert_eq!(count("cmd_get"), 2);
    assert_eq!((count("get_hits"), count("get_misses")), (1, 1));
    assert_eq!(count("cmd_touch"), 1);
    assert_eq!((count("delete_hits"), count("delete_misses")), (1, 1));
    assert_eq!(count("curr_items"), 0);
}

#[test]
fn a_killed_memcached_restarts_on_its_port_empty() {
    let mut server = MemcachedServer::start();
    let addr = server.addr();
    memcached(&addr, "set k 0 0 1\r\nv\r\n", "STORED\r\n");
    assert_eq!(
        memcached(&addr, "get k\r\n", "END\r\n"),
        "VALUE k 0 1\r\nv\r\nEND"
    );

    let port = server.port();
    server.kill();
    assert!(!server.is_running());
    assert!(!server.answers(Duration::from_secs(1)));
    assert!(refuses_connections(port));

    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.answers(Duration::from_secs(1)));
    assert_eq!(memcached(&addr, "get k\r\n", "END\r\n"), "END");
}

#[test]
fn a_paused_memcached_answers_only_once_resumed() {
    let mut server = MemcachedServer::start();

    server.pause();
    assert!(server.is_running());
    assert!(!server.answers(Duration::from_millis(100)));

    server.resume();
    assert!(server.answers(Duration::from_secs(1)));
}

#[test]
fn start_many_gives_memcached_servers_ports_of_their_own() {
    let servers = MemcachedServer::start_many(3);

    let mut ports: Vec<u16> = servers.iter().map(MemcachedServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    assert!(servers
        .iter()
        .all(|server| server.answers(Duration::from_secs(1))));
}

#[test]
fn dropping_a_memcached_server_kills_it_and_removes_its_folder() {
    let server = MemcachedServer::start();
    let (port, folder) = (server.port(), server.folder().to_owned());
    assert!(folder.join("memcached.log").exists());

    drop(server);

    assert!(refuses_connections(port));
    assert!(!folder.exists());
}

#[test]
#[should_panic(expected = "its port was taken by another process")]
fn a_memcached_restart_on_a_port_taken_meanwhile_panics() {
    let mut server = MemcachedServer::start();
    server.kill();
    let _squatter =
        TcpListener::bind((Ipv4Addr::LOCALHOST, server.port())).expect("the port is free");

    server.restart();
}

#[test]
#[should_panic(expected = "Item max size cannot be less than 1024 bytes")]
fn a_memcached_that_cannot_start_panics_with_its_log() {
    let _ = MemcachedServer::start_with(&["-I", "1"]);
}

#[test]
#[should_panic(expected = "no whole answer to `stats` within")]
fn memcached_stats_of_a_paused_server_panic_instead_of_hanging() {
    let mut server = MemcachedServer::start();
    server.pause();

    let _ = server.stats();
}

#[test]
fn a_tls_server_answers_over_tls_only_and_restarts_in_tls() {
    let started = Instant::now();
    let mut server = RedisServer::start_tls(RedisTls::Server);
    eprintln!("RedisServer::start_tls took {:?}", started.elapsed());
    assert!(server.url().starts_with("rediss://127.0.0.1:"));
    server.cli(&["set", "k", "v"]);
    assert_eq!(server.cli(&["get", "k"]), "v");
    assert!(
        !answers_plain_ping(server.port()),
        "no plain text on the TLS port"
    );

    server.restart();
    assert!(server.answers_ping(Duration::from_secs(2)));
    assert!(server.tls_files().unwrap().ca_cert().exists());
}

#[test]
fn a_mutual_tls_server_refuses_a_client_without_a_certificate() {
    let server = RedisServer::start_tls(RedisTls::Mutual);
    let files = server.tls_files().unwrap();
    let ping = |with_certificate: bool| {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &server.port().to_string(), "--tls"]);
        command.arg("--cacert").arg(files.ca_cert());
        if with_certificate {
            command.arg("--cert").arg(files.client_cert());
            command.arg("--key").arg(files.client_key());
        }
        let output = command.arg("PING").output().expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(
        ping(true),
        "PONG",
        "the CA checks out and the client shows its certificate"
    );
    assert_ne!(ping(false), "PONG");
}

#[test]
fn a_tls_cluster_names_its_tls_ports_and_routes_keys() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start_tls(RedisTls::Server);
    eprintln!("RedisCluster::start_tls took {:?}", started.elapsed());
    let ports: Vec<u16> = cluster.nodes().iter().map(RedisServer::port).collect();
    let seed = &cluster.nodes()[0];
    for i in 0..6 {
        let key = format!("key:{i}");
        seed.cli(&["-c", "set", &key, "v"]);
        assert_eq!(seed.cli(&["-c", "get", &key]), "v");
    }
    // CLUSTER SLOTS is what a client follows: the ports there are the
    // nodes' TLS ports.
    let slots = seed.cli(&["cluster", "slots"]);
    for port in ports {
        assert!(
            slots.lines().any(|line| line == port.to_string()),
            "{port} in {slots}"
        );
    }
}

#[test]
fn a_tls_sentinel_group_settles_and_names_its_master() {
    let started = Instant::now();
    let mut group = RedisSentinel::start_tls(RedisTls::Mutual);
    eprintln!("RedisSentinel::start_tls took {:?}", started.elapsed());
    assert!(group
        .sentinel_urls()
        .iter()
        .all(|url| url.starts_with("rediss://")));
    let master = group.master_port();
    assert_eq!(role(group.server(master)), "master");
}

/// Whether a plain-text PING on `port` gets `+PONG` within 2 s.
fn answers_plain_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("a timeout");
    let _ = stream.write_all(b"PING\r\n");
    let mut reply = [0_u8; 5];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}

fn refuses_connections(port: u16) -> bool {
    matches!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
        Err(err) if err.kind() == ErrorKind::ConnectionRefused
    )
}

fn role(server: &RedisServer) -> String {
    let reply = server.cli(&["role"]);
    reply.lines().next().unwrap_or_default().to_owned()
}

/// Reads the port and folder the owner prints once its server is up.
fn read_owner_line(owner: &mut std::process::Child) -> (u16, PathBuf) {
    let stdout = owner.stdout.take().expect("stdout is piped");
    let mut said = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix(OWNER_LINE) {
            let (port, folder) = rest.trim().split_once(' ').expect("port and folder");
            return (port.parse().expect("a port"), Path::new(folder).to_owned());
        }
        said.push(line);
    }
    let _ = owner.kill();
    panic!(
        "the owner exited without starting a server:\n{}",
        said.join("\n")
    );
}

/// Sends `request` to the memcached at `addr` over a new connection and
/// returns its reply, without the final `\r\n`, once the reply ends with
/// `end` (`STORED\r\n`, `END\r\n`). Bounded: 5 s.
fn memcached(addr: &str, request: &str, end: &str) -> String {
    let mut connection = TcpStream::connect(addr).expect("memcached accepts a connection");
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout can be set");
    connection
        .write_all(request.as_bytes())
        .expect("memcached takes the request");
    let mut reply = Vec::new();
    let mut chunk = [0; 1024];
    while !reply.ends_with(end.as_bytes()) {
        let read = connection.read(&mut chunk).unwrap_or_else(|err| {
            panic!(
                "memcached at {addr} stopped answering {request:?} after {:?}: {err}",
                String::from_utf8_lossy(&reply)
            )
        });
        assert!(read > 0, "memcached at {addr} closed the connection");
        reply.extend_from_slice(&chunk[..read]);
    }
    let reply = String::from_utf8(reply).expect("a text reply");
    reply.trim_end_matches("\r\n").to_owned()
}
