//! Networking end to end: the default bridge with NAT and published ports, user-defined
//! networks with DNS and isolation, bad input, and survival of a daemon restart. Every
//! daemon has its own bridge and subnet; traffic stays on this machine (loopback, the test's
//! bridges and a private "outside" namespace).

use berth_tests::{stderr, stdout, unique_subnet, Daemon};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

/// The host's first global IPv4 address (what other hosts would connect to).
fn host_ip() -> Ipv4Addr {
    let o = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for l in text.lines() {
        if l.contains("bt-") || l.contains(" br-") || l.contains("berth") {
            continue;
        }
        if let Some(a) = l.split_whitespace().skip_while(|w| *w != "inet").nth(1) {
            if let Some(ip) = a.split('/').next().and_then(|s| s.parse().ok()) {
                return ip;
            }
        }
    }
    panic!("no global IPv4 address on this host: {text}");
}

fn http_get(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(path).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn links_on(bridge: &str) -> String {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn nft_table(d: &Daemon) -> String {
    let o = Command::new("nft")
        .args(["list", "table", "ip", &format!("berth-{}", d.bridge)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A private namespace playing "another host", joined to the host by a veth with its own
/// /24. Removed on drop.
struct Outside {
    ns: String,
    host_if: String,
    pub host_side: Ipv4Addr,
    pub far_side: Ipv4Addr,
}

impl Outside {
    fn new(tag: &str) -> Outside {
        let (a, b) = unique_subnet();
        let ns = format!("bxo-{tag}");
        let host_if = format!("bxh{}", &tag[..tag.len().min(8)]);
        let host_side = Ipv4Addr::new(10, a, b, 1);
        let far_side = Ipv4Addr::new(10, a, b, 2);
        let sh = |c: String| {
            let st = Command::new("sh").arg("-c").arg(&c).status().unwrap();
            assert!(st.success(), "{c}");
        };
        sh(format!("ip netns add {ns}"));
        let o = Outside {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_side,
            far_side,
        };
        sh(format!(
            "ip link add {host_if} type veth peer name eth0 netns {ns} && \
             ip addr add {host_side}/24 dev {host_if} && ip link set {host_if} up && \
             ip -n {ns} addr add {far_side}/24 dev eth0 && ip -n {ns} link set eth0 up && \
             ip -n {ns} link set lo up"
        ));
        o
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A shell snippet that resolves NAME through the container's resolver (busybox nslookup:
/// the test image's static glibc cannot load NSS modules, so libc lookups crash in it) and
/// fetches / from it over HTTP with nc.
fn fetch_by_name(name: &str) -> String {
    format!(
        "ip=$(nslookup {name} 2>/dev/null | awk '/^Name:/{{f=1}} f&&/^Address/{{print $2; exit}}'); \
         [ -n \"$ip\" ] || {{ echo unresolved >&2; exit 2; }}; \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 80"
    )
}

fn fetch_ip(ip: &str) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 80")
}

fn tag(d: &Daemon) -> String {
    d.bridge.trim_start_matches("bt-").to_string()
}

#[test]
fn default_bridge_nat_and_published_ports() {
    let d = Daemon::start();
    d.busybox();
    let prefix = d.bip.rsplit_once('.').unwrap().0.to_string();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "80",
        "-p",
        "5353/udp",
        "--add-host",
        "db.example:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = d.field(&id, "{{.NetworkSettings.IPAddress}}");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "{ip} not in {}",
        d.bip
    );
    let ip2 = d.field(
        &id,
        "{{(index .NetworkSettings.Networks \"bridge\").IPAddress}}",
    );
    assert_eq!(ip, ip2);
    let mac = d.field(&id, "{{.NetworkSettings.MacAddress}}");
    assert!(mac.starts_with("02:42:"), "{mac}");

    // Inside: eth0 with that address, a default route via the bridge, /etc/hosts.
    let inside = d.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ip -4 -o addr; ip route; cat /etc/hosts",
    ]);
    assert!(inside.contains(&format!("{ip}/24")), "{inside}");
    assert!(
        inside.contains(&format!("default via {prefix}.1")),
        "{inside}"
    );
    assert!(inside.contains("10.1.2.3\tdb.example"), "{inside}");
    assert!(inside.contains(&format!("{ip}\t{}", &id[..12])), "{inside}");
    let resolv = d.ok(&["exec", "web", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("nameserver 127."), "{resolv}");

    // The published TCP port answers on 127.0.0.1 and on the host's own address.
    let port_line = d.ok(&["port", "web", "80/tcp"]);
    let port: u16 = port_line
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("port: {port_line}"));
    d.eventually("httpd answers on 127.0.0.1", || {
        http_get(SocketAddr::from(([127, 0, 0, 1], port))).contains("hello-berth")
    });
    let hip = host_ip();
    assert!(
        http_get(SocketAddr::from((hip, port))).contains("hello-berth"),
        "no answer on {hip}:{port}"
    );
    let ps = d.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");

    // UDP: a socket in the container's namespace receives what the host sends to the port.
    let udp_port: u16 = d
        .ok(&["port", "web", "5353/udp"])
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    let pid = d.field(&id, "{{.State.Pid}}");
    let rx = in_netns(&format!("/proc/{pid}/ns/net"), || {
        UdpSocket::bind("0.0.0.0:5353").unwrap()
    });
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("0.0.0.0:0").unwrap();
    for dst in [Ipv4Addr::LOCALHOST, hip] {
        tx.send_to(b"ping-udp", (dst, udp_port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rx
            .recv_from(&mut buf)
            .expect("udp datagram through the published port");
        assert_eq!(&buf[..n], b"ping-udp");
    }

    // Outbound traffic is masqueraded: "another host" sees the host's address, not the
    // container's.
    let out = Outside::new(&tag(&d));
    let far = out.far_side;
    let listener = in_netns(&out.path(), move || {
        std::net::TcpListener::bind((far, 7000)).unwrap()
    });
    // busybox nc exits when the server closes, so the server reads one line and hangs up.
    let server = std::thread::spawn(move || {
        let (conn, peer) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut line).unwrap();
        (line, peer)
    });
    let o = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("echo via-nat | nc {far} 7000"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (got, peer) = server.join().unwrap();
    assert_eq!(got, "via-nat\n");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(out.host_side),
        "not masqueraded"
    );

    // Removing the container leaves no veth and no port rule behind.
    assert!(!links_on(&d.bridge).is_empty());
    assert!(nft_table(&d).contains("dnat"), "{}", nft_table(&d));
    d.ok(&["rm", "-f", "web"]);
    d.eventually("veths gone", || links_on(&d.bridge).is_empty());
    assert!(!nft_table(&d).contains("dnat"), "{}", nft_table(&d));
    assert!(
        std::fs::read_dir(d.exec_root.join("netns"))
            .map(|r| r.count())
            .unwrap_or(0)
            == 0
    );
    // The port is free again.
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
}

#[test]
fn user_networks_dns_aliases_and_isolation() {
    let d = Daemon::start();
    d.busybox();
    let (a1, b1) = unique_subnet();
    let (a2, b2) = unique_subnet();
    let (a3, b3) = unique_subnet();
    let s1 = format!("10.{a1}.{b1}.0/24");
    let s2 = format!("10.{a2}.{b2}.0/24");
    let s3 = format!("10.{a3}.{b3}.0/24");
    let n1 = d.ok(&[
        "network", "create", "--subnet", &s1, "--label", "t=1", "front",
    ]);
    d.ok(&["network", "create", "--subnet", &s2, "back"]);
    d.ok(&["network", "create", "--subnet", &s3, "--internal", "sealed"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        "front bridge",
        "back bridge",
    ] {
        assert!(ls.contains(want), "{ls}");
    }
    let br1 = format!("br-{}", &n1.trim()[..12]);
    assert!(links_on(&br1).is_empty());
    assert!(Command::new("ip")
        .args(["link", "show", &br1])
        .status()
        .unwrap()
        .success());

    let web = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--network-alias",
        "www",
        "busybox",
        "sh",
        "-c",
        "echo hi-from-web > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ]);
    let web_ip = d.field(
        &web,
        "{{(index .NetworkSettings.Networks \"front\").IPAddress}}",
    );
    assert!(web_ip.starts_with(&format!("10.{a1}.{b1}.")), "{web_ip}");
    // By name, alias and short id, through the embedded DNS server.
    for name in ["web", "www", &web[..12], "web.front", "WEB"] {
        let o = d.berth(&[
            "run",
            "--rm",
            "--network",
            "front",
            "busybox",
            "sh",
            "-c",
            &fetch_by_name(name),
        ]);
        assert!(
            stdout(&o).contains("hi-from-web"),
            "{name}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    let resolv = d.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "nslookup",
        "nosuch-name-xyz",
    ]);
    assert!(
        !o.status.success()
            || stdout(&o).contains("NXDOMAIN")
            || stdout(&o).contains("SERVFAIL")
            || stdout(&o).contains("can't")
    );

    // Another network cannot reach it, by name or address.
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "sh",
        "-c",
        &fetch_ip(&web_ip),
    ]);
    assert!(
        !stdout(&o).contains("hi-from-web"),
        "isolation broken: {}",
        stdout(&o)
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "sh",
        "-c",
        &fetch_by_name("web"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("unresolved"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Until a container joins both.
    d.ok(&[
        "create",
        "--name",
        "both",
        "--network",
        "back",
        "busybox",
        "sh",
        "-c",
        &fetch_by_name("web"),
    ]);
    d.ok(&["network", "connect", "front", "both"]);
    let o = d.berth(&["start", "-a", "both"]);
    assert!(
        stdout(&o).contains("hi-from-web"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let insp = d.ok(&[
        "network",
        "inspect",
        "front",
        "--format",
        "{{json .Containers}}",
    ]);
    assert!(insp.contains(&web), "{insp}");
    assert!(insp.contains(&format!("{web_ip}/24")), "{insp}");

    // Connecting a running container hot-plugs an interface.
    let probe = d.ok(&[
        "run",
        "-d",
        "--name",
        "probe",
        "--network",
        "back",
        "busybox",
        "sleep",
        "600",
    ]);
    d.ok(&["network", "connect", "--alias", "pr", "front", "probe"]);
    let o = d.ok(&["exec", "probe", "sh", "-c", &fetch_by_name("www")]);
    assert!(o.contains("hi-from-web"), "{o}");
    let o = d.ok(&["exec", "web", "nslookup", "pr"]);
    assert!(o.contains("Name:\tpr"), "{o}");
    d.ok(&["network", "disconnect", "front", "probe"]);
    let o = d.berth(&["exec", "probe", "sh", "-c", &fetch_ip(&web_ip)]);
    assert!(!stdout(&o).contains("hi-from-web"));
    let _ = probe;

    // --internal: no default route, no way out.
    let r = d.ok(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!r.contains("default"), "{r}");
    assert!(r.contains(&format!("10.{a3}.{b3}.0/24")), "{r}");

    // In use: refused. Then everything goes and nothing is left on the host.
    let o = d.berth(&["network", "rm", "front"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has active endpoints"),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", "web", "both", "probe"]);
    d.ok(&["network", "rm", "front", "back", "sealed"]);
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains(&br1), "{links}");
    let t = nft_table(&d);
    assert!(!t.contains("br-"), "{t}");
    let ls = d.ok(&["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
}

#[test]
fn network_bad_input_changes_nothing() {
    let d = Daemon::start();
    d.busybox();
    let (a, b) = unique_subnet();
    let s = format!("10.{a}.{b}.0/24");
    d.ok(&["network", "create", "--subnet", &s, "n1"]);
    let before = d.ok(&["network", "ls", "-q"]);

    let o = d.berth(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a}.{b}.128/25"),
        "n2",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Pool overlaps"), "{}", stderr(&o));
    let o = d.berth(&["network", "create", "--subnet", "300.1.1.0/24", "n3"]);
    assert!(
        stderr(&o).contains("invalid CIDR address: 300.1.1.0/24"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a}.{}.0/24", b + 100),
        "n1",
    ]);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = d.berth(&["network", "rm", "bridge"]);
    assert!(stderr(&o).contains("pre-defined network"), "{}", stderr(&o));
    let o = d.berth(&["network", "rm", "nosuch"]);
    assert!(
        stderr(&o).contains("network nosuch not found"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.ok(&["network", "ls", "-q"]), before);

    let o = d.berth(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("network nosuch not found"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--rm", "--ip", "10.9.9.9", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = d.berth(&["run", "--rm", "-p", "99999:80", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));

    // A host port already taken: docker's message, and the container is left stopped with
    // nothing of its network behind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("127.0.0.1:{p}:80"),
        "busybox",
        "sleep",
        "60",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.field("clash", "{{.State.Running}}"), "false");
    assert_eq!(links_on(&d.bridge), "");
    assert!(!nft_table(&d).contains("dnat"));
    // The address went back to the pool: the next container gets .2 again.
    let id = d.ok(&["run", "-d", "busybox", "sleep", "60"]);
    let ip = d.field(&id, "{{.NetworkSettings.IPAddress}}");
    assert!(ip.ends_with(".2"), "{ip}");
}

#[test]
fn network_survives_daemon_kill9() {
    let mut d = Daemon::start();
    d.busybox();
    let (a, b) = unique_subnet();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a}.{b}.0/24"),
        "app",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "app",
        "-p",
        "80",
        "busybox",
        "sh",
        "-c",
        "echo api-up > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        "app",
        "busybox",
        "sleep",
        "600",
    ]);
    let port: u16 = d
        .ok(&["port", "api", "80"])
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap();
    d.eventually("published port answers", || {
        http_get(SocketAddr::from(([127, 0, 0, 1], port))).contains("api-up")
    });
    d.kill9();
    d.restart();
    assert!(http_get(SocketAddr::from(([127, 0, 0, 1], port))).contains("api-up"));
    // DNS inside the running container works again, and new containers resolve it too.
    let o = d.ok(&["exec", "cli", "sh", "-c", &fetch_by_name("api")]);
    assert!(o.contains("api-up"), "{o}");
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "sh",
        "-c",
        &fetch_by_name("api"),
    ]);
    assert!(o.contains("api-up"), "{o}");
    // The port is still held: another container cannot take it.
    let o = d.berth(&[
        "run",
        "-d",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "5",
    ]);
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", "api", "cli"]);
    d.ok(&["network", "rm", "app"]);
}

#[test]
fn docker_cli_networks() {
    if !std::path::Path::new("/usr/local/bin/docker").exists()
        && Command::new("docker").arg("--version").output().is_err()
    {
        eprintln!("docker CLI not installed; skipping");
        return;
    }
    let d = Daemon::start();
    d.busybox();
    let (a, b) = unique_subnet();
    let sub = format!("10.{a}.{b}.0/24");
    let id = d.dok(&[
        "network",
        "create",
        "--subnet",
        &sub,
        "--gateway",
        &format!("10.{a}.{b}.254"),
        "dn",
    ]);
    let g = d.dok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        "dn",
    ]);
    assert_eq!(g, format!("{sub} 10.{a}.{b}.254"));
    let ls = d.dok(&["network", "ls"]);
    assert!(ls.contains("dn") && ls.contains(&id[..12]), "{ls}");
    d.dok(&[
        "run",
        "-d",
        "--name",
        "s1",
        "--network",
        "dn",
        "--ip",
        &format!("10.{a}.{b}.50"),
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sh",
        "-c",
        "echo docker-cli > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ]);
    let ip = d.dok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        "s1",
    ]);
    assert_eq!(ip, format!("10.{a}.{b}.50"));
    let port = d.dok(&["port", "s1"]);
    assert!(port.starts_with("80/tcp -> 127.0.0.1:"), "{port}");
    let p: u16 = port.trim().rsplit(':').next().unwrap().parse().unwrap();
    d.eventually("docker-published port answers", || {
        http_get(SocketAddr::from(([127, 0, 0, 1], p))).contains("docker-cli")
    });
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "dn",
        "busybox",
        "sh",
        "-c",
        &fetch_by_name("s1"),
    ]);
    assert!(
        stdout(&o).contains("docker-cli"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    d.dok(&["rm", "-f", "s1"]);
    d.dok(&["network", "rm", "dn"]);
    let o = d.docker(&["network", "inspect", "dn"]);
    assert!(!o.status.success());
}

#[test]
fn network_options_and_modes() {
    let d = Daemon::start();
    d.busybox();
    // -P publishes the image's EXPOSE to random ports.
    let o = d.berth_stdin(
        &["import", "-c", "EXPOSE 80 9000/udp", "-", "exposed"],
        Some(&std::fs::read(berth_tests::busybox_tar()).unwrap()),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = d.ok(&[
        "run",
        "-d",
        "-P",
        "--name",
        "pub",
        "exposed",
        "sh",
        "-c",
        "echo p-all > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    ]);
    let ports = d.ok(&["port", "pub"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:"), "{ports}");
    assert!(ports.contains("9000/udp -> 0.0.0.0:"), "{ports}");
    let p: u16 = ports
        .lines()
        .find(|l| l.starts_with("80/tcp"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    d.eventually("-P port answers", || {
        http_get(SocketAddr::from(([127, 0, 0, 1], p))).contains("p-all")
    });
    let insp = d.field(&id, "{{json .NetworkSettings.Ports}}");
    assert!(
        insp.contains("\"80/tcp\":[{\"HostIp\":\"0.0.0.0\""),
        "{insp}"
    );

    // container:NAME shares the network namespace (and its /etc files).
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:pub",
        "busybox",
        "sh",
        "-c",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80",
    ]);
    assert!(o.contains("p-all"), "{o}");
    let ip = d.field(&id, "{{.NetworkSettings.IPAddress}}");
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:pub",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
    ]);
    assert!(o.contains(&ip), "{o}");
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );

    // Stop and start: the network comes back (and the old address is free meanwhile).
    d.ok(&["stop", "-t", "1", "pub"]);
    assert_eq!(d.field(&id, "{{.NetworkSettings.IPAddress}}"), "");
    d.eventually("veths gone", || links_on(&d.bridge).is_empty());
    d.ok(&["start", "pub"]);
    let p2: u16 = d
        .ok(&["port", "pub", "80"])
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    d.eventually("port answers after restart", || {
        http_get(SocketAddr::from(([127, 0, 0, 1], p2))).contains("p-all")
    });
    d.ok(&["rm", "-f", "pub"]);

    // --mac-address, --hostname, --dns, --dns-search, --dns-option, a port range.
    let o = d.ok(&[
        "run",
        "--rm",
        "--mac-address",
        "92:d0:c6:0a:29:33",
        "-h",
        "myhost",
        "--dns",
        "10.9.8.7",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:3",
        "-p",
        "127.0.0.1::7000-7001",
        "busybox",
        "sh",
        "-c",
        "ip link show eth0; cat /etc/resolv.conf; cat /etc/hosts; hostname",
    ]);
    assert!(o.contains("link/ether 92:d0:c6:0a:29:33"), "{o}");
    assert!(o.contains("nameserver 10.9.8.7"), "{o}");
    assert!(o.contains("search corp.example"), "{o}");
    assert!(o.contains("options ndots:3"), "{o}");
    assert!(o.contains("\tmyhost\n"), "{o}");
    assert!(o.trim_end().ends_with("myhost"), "{o}");
    let o = d.berth(&["run", "--rm", "--mac-address", "zz:zz", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));

    // host mode: the host's interfaces, no veth.
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(o.contains(&d.bridge), "{o}");
    d.eventually("veths gone", || links_on(&d.bridge).is_empty());
    // none: loopback only.
    let o = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(o.lines().count(), 1, "{o}");
}

#[test]
fn network_create_options_connect_ip_and_prune() {
    let d = Daemon::start();
    d.busybox();
    let (a, b) = unique_subnet();
    let t = tag(&d);
    let brname = format!("bn{}", &t[..t.len().min(10)]);
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a}.{b}.0/24"),
        "--ip-range",
        &format!("10.{a}.{b}.128/25"),
        "-o",
        &format!("com.docker.network.bridge.name={brname}"),
        "--label",
        "team=x",
        "ranged",
    ]);
    assert!(Command::new("ip")
        .args(["link", "show", &brname])
        .status()
        .unwrap()
        .success());
    let id = d.ok(&[
        "run",
        "-d",
        "--network",
        "ranged",
        "busybox",
        "sleep",
        "600",
    ]);
    let ip = d.field(
        &id,
        "{{(index .NetworkSettings.Networks \"ranged\").IPAddress}}",
    );
    assert_eq!(
        ip,
        format!("10.{a}.{b}.128"),
        "allocation starts in --ip-range"
    );
    // connect --ip on a stopped container, then start: it gets that address.
    let c2 = d.ok(&["create", "busybox", "sleep", "600"]);
    d.ok(&[
        "network",
        "connect",
        "--ip",
        &format!("10.{a}.{b}.77"),
        "ranged",
        &c2,
    ]);
    d.ok(&["start", &c2]);
    let ip2 = d.field(
        &c2,
        "{{(index .NetworkSettings.Networks \"ranged\").IPAddress}}",
    );
    assert_eq!(ip2, format!("10.{a}.{b}.77"));
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "ranged",
        "--ip",
        &format!("10.{a}.{b}.77"),
        "busybox",
        "true",
    ]);
    assert_ne!(o.status.code(), Some(0), "duplicate --ip accepted");
    let ls = d.ok(&[
        "network",
        "ls",
        "--filter",
        "label=team=x",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(ls, "ranged");
    d.ok(&["rm", "-f", &id, &c2]);
    // prune removes unused user networks only (the predefined three stay).
    let (a2, b2) = unique_subnet();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a2}.{b2}.0/24"),
        "spare",
    ]);
    let o = d.ok(&["network", "prune", "-f"]);
    assert!(o.contains("ranged") && o.contains("spare"), "{o}");
    assert_eq!(d.ok(&["network", "ls", "-q"]).lines().count(), 3);
    assert!(!Command::new("ip")
        .args(["link", "show", &brname])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
    assert!(!nft_table(&d).contains(&brname));
}

/// Frames on berth's bridges are as big as loopback's (MTU 65520 on the bridge and both veth
/// ends) while the way out keeps docker's 1500 (the container's default route says so), and
/// a published port carries a big transfer intact through it.
#[test]
fn bridge_mtu_big_inside_docker_sized_outside() {
    let d = Daemon::start();
    d.busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "-p",
        "127.0.0.1::7000",
        "busybox",
        "sh",
        "-c",
        "nc -l -p 7000 | wc -c > /count; sleep 60",
    ]);
    assert_eq!(
        d.ok(&["exec", &id, "cat", "/sys/class/net/eth0/mtu"]),
        "65520"
    );
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", d.bridge)).unwrap();
    assert_eq!(mtu.trim(), "65520");
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let o = Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip", "route", "show", "default"])
        .output()
        .unwrap();
    let route = stdout(&o);
    assert!(route.contains("mtu 1500"), "{route}");
    let port = d.ok(&["port", &id, "7000"]);
    let addr: SocketAddr = port.lines().next().unwrap().parse().unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let data = vec![7u8; 8 << 20];
            if s.write_all(&data).is_ok() {
                ok = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "could not send through {addr}");
    let mut count = String::new();
    for _ in 0..100 {
        count = d.ok(&["exec", &id, "cat", "/count"]);
        if !count.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count, (8 << 20).to_string());
    d.ok(&["rm", "-f", &id]);
}
