//! The namespace NAT of `tests/support/netns.rs` behaves like a NAT: what the
//! private host sends arrives at the public host from the router's public
//! address, replies come back through the mapping, the public host cannot
//! reach the private host directly, and everything is gone after Drop.

#[path = "support/netns.rs"]
mod netns;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use netns::{Nat, NatOptions, netns_names};

const TIMEOUT: Duration = Duration::from_secs(10);

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("a datagram arrives within the timeout");
    (buf[..n].to_vec(), from)
}

fn public_server(nat: &Nat) -> (UdpSocket, SocketAddr) {
    let addr = SocketAddr::V4(SocketAddrV4::new(Nat::PUBLIC, 0));
    let sock = nat.public.bind_udp(addr);
    let local = sock.local_addr().unwrap();
    (sock, local)
}

#[test]
fn masquerade_rewrites_the_source_to_the_router_public_address_and_keeps_the_port() {
    let nat = Nat::build(NatOptions::default());
    let (server, server_addr) = public_server(&nat);
    let client = nat
        .private
        .bind_udp(SocketAddr::V4(SocketAddrV4::new(Nat::PRIVATE, 0)));
    let client_port = client.local_addr().unwrap().port();

    client.send_to(b"hello", server_addr).unwrap();
    let (data, from) = recv(&server);
    assert_eq!(data, b"hello");
    assert_eq!(
        from.ip(),
        Nat::ROUTER_PUBLIC,
        "source rewritten by MASQUERADE"
    );
    assert_eq!(
        from.port(),
        client_port,
        "MASQUERADE keeps a free source port"
    );

    // The reply travels back through the conntrack mapping.
    server.send_to(b"back", from).unwrap();
    let (data, from) = recv(&client);
    assert_eq!(data, b"back");
    assert_eq!(from, server_addr);
}

#[test]
fn the_public_side_has_no_route_to_the_private_host() {
    let nat = Nat::build(NatOptions::default());
    let (server, _) = public_server(&nat);
    let err = server
        .send_to(b"x", SocketAddr::V4(SocketAddrV4::new(Nat::PRIVATE, 5000)))
        .expect_err("198.51.100.0/26 is unreachable from the public host");
    assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
}

#[test]
fn random_fully_picks_a_new_port_and_flush_forgets_the_mapping() {
    let mut nat = Nat::build(NatOptions {
        second_public_address: true,
        ..NatOptions::default()
    });
    assert!(nat.rules().contains("MASQUERADE"), "{}", nat.rules());
    let (server, server_addr) = public_server(&nat);
    let client = nat
        .private
        .bind_udp(SocketAddr::V4(SocketAddrV4::new(Nat::PRIVATE, 0)));
    let client_port = client.local_addr().unwrap().port();
    client.send_to(b"1", server_addr).unwrap();
    let (_, from) = recv(&server);
    assert_eq!(from.port(), client_port);
    assert!(
        nat.conntrack_udp()
            .contains(&format!("sport={client_port}")),
        "{}",
        nat.conntrack_udp()
    );

    nat.set_random_fully(true);
    assert!(nat.rules().contains("--random-fully"), "{}", nat.rules());
    nat.flush_conntrack();
    // Several fresh mappings: with --random-fully the kernel chooses a random
    // port for each; all of them keeping the source port would mean the
    // option is not in effect.
    let mut kept = 0;
    for i in 0..4u8 {
        let c = nat
            .private
            .bind_udp(SocketAddr::V4(SocketAddrV4::new(Nat::PRIVATE, 0)));
        c.send_to(&[i], server_addr).unwrap();
        let (_, from) = recv(&server);
        assert_eq!(from.ip(), Nat::ROUTER_PUBLIC);
        if from.port() == c.local_addr().unwrap().port() {
            kept += 1;
        }
    }
    assert!(kept < 4, "--random-fully never changed the source port");

    // The second public address answers too.
    let alt = nat
        .public
        .bind_udp(SocketAddr::V4(SocketAddrV4::new(Nat::PUBLIC_ALT, 0)));
    client.send_to(b"alt", alt.local_addr().unwrap()).unwrap();
    let (data, from) = recv(&alt);
    assert_eq!(data, b"alt");
    assert_eq!(from.ip(), Nat::ROUTER_PUBLIC);
}

#[test]
fn udp_timeouts_are_set_in_the_router_only() {
    let nat = Nat::build(NatOptions::default());
    // The conntrack sysctls exist once the NAT rule has loaded conntrack.
    nat.set_udp_timeout(7);
    nat.set_udp_timeout_stream(11);
    assert_eq!(
        nat.router_sysctl("net.netfilter.nf_conntrack_udp_timeout"),
        7
    );
    assert_eq!(
        nat.router_sysctl("net.netfilter.nf_conntrack_udp_timeout_stream"),
        11
    );
    assert_eq!(nat.router_sysctl("net.ipv4.ip_forward"), 1);
    let private_forward = nat
        .private
        .run_cmd("sysctl", &["-n", "net.ipv4.ip_forward"]);
    assert_eq!(private_forward.trim(), "0");
}

#[test]
fn drop_deletes_the_namespaces_also_on_panic() {
    let names = std::panic::catch_unwind(|| {
        let nat = Nat::build(NatOptions::default());
        let names = [
            nat.private.name.clone(),
            nat.router.name.clone(),
            nat.public.name.clone(),
        ];
        let listed = netns_names();
        for n in &names {
            assert!(listed.contains(n), "{n} exists while the Nat lives");
        }
        std::panic::panic_any(names)
    })
    .expect_err("the closure panics")
    .downcast::<[String; 3]>()
    .expect("the panic carries the names");
    let listed = netns_names();
    for n in names.iter() {
        assert!(!listed.contains(n), "{n} deleted after the panic");
    }
}

#[test]
fn programs_inside_cannot_reach_the_machines_resolver() {
    let nat = Nat::build(NatOptions::default());
    let etc = format!("/etc/netns/{}", nat.private.name);
    assert!(std::path::Path::new(&etc).join("resolv.conf").exists());
    let resolv = nat.private.run_cmd("cat", &["/etc/resolv.conf"]);
    assert_eq!(resolv, "nameserver 127.0.0.1\n");
    let nss = nat.private.run_cmd("cat", &["/etc/nsswitch.conf"]);
    assert_eq!(nss, "hosts: files dns\n");
    drop(nat);
    assert!(
        !std::path::Path::new(&etc).exists(),
        "{etc} removed by Drop"
    );
}

#[test]
fn namespaces_of_a_dead_test_process_are_deleted_by_the_next_build() {
    // PIDs above the kernel's pid_max (at most 2^22) never exist.
    let stale = "sl9999999n0r";
    let out = std::process::Command::new("ip")
        .args(["netns", "add", stale])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _nat = Nat::build(NatOptions::default());
    assert!(!netns_names().contains(&stale.to_string()));
}
