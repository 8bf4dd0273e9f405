//! The throwaway PostgreSQL cluster: it starts, gives each caller a database of its own, and is
//! gone (server stopped, folder deleted) once dropped.

use mission_testkit::pg::Cluster;
use std::time::{Duration, Instant};

#[test]
fn a_cluster_serves_fresh_databases_and_is_removed_when_dropped() {
    let cluster = Cluster::start();
    let first = cluster.create_database();
    let second = cluster.create_database();
    assert_ne!(first, second);
    let name = first.rsplit('/').next().unwrap();
    cluster.sql(name, "CREATE TABLE t (x INT); INSERT INTO t VALUES (1)");
    assert_eq!(cluster.sql(name, "SELECT x FROM t").trim(), "1");
    assert_eq!(cluster.sql(name, "SHOW fsync").trim(), "on");
    let schema = cluster.create_schema();
    assert!(schema.contains("search_path"), "{schema}");
    assert_ne!(schema, cluster.create_schema());
    cluster.query(&schema, "CREATE TABLE t (x INT)");
    assert_eq!(
        cluster.query(&schema, "SELECT current_schema()").trim(),
        schema.rsplit("%3D").next().unwrap()
    );
    let port = cluster.port();
    drop(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
