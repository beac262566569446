//! The bundled demo (examples/demo), compiled into the binary so `serve --demo` and
//! `audit --demo` run from the binary alone.

/// `(name, content)` of the demo's cluster dump.
pub const CLUSTER: &[(&str, &[u8])] = &[
    (
        "cluster/ack-system/carm.yaml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/ack-system/carm.yaml"
        )),
    ),
    (
        "cluster/ack-system/controllers.yaml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/ack-system/controllers.yaml"
        )),
    ),
    (
        "cluster/namespaces.yaml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/namespaces.yaml"
        )),
    ),
    (
        "cluster/resources/ec2.yaml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/resources/ec2.yaml"
        )),
    ),
    (
        "cluster/resources/rds.yaml",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/resources/rds.yaml"
        )),
    ),
    (
        "cluster/resources/s3.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cluster/resources/s3.json"
        )),
    ),
];

/// `(name, content)` of the demo's trail deliveries.
pub const CLOUDTRAIL: &[(&str, &[u8])] = &[
    (
        "cloudtrail/AWSLogs/178394743802/CloudTrail/eu-west-2/2024/03/12/178394743802_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/178394743802/CloudTrail/eu-west-2/2024/03/12/178394743802_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/178394743802/CloudTrail/eu-west-2/2024/03/12/178394743802_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/178394743802/CloudTrail/eu-west-2/2024/03/12/178394743802_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/210987654321/CloudTrail/eu-west-2/2024/03/12/210987654321_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/210987654321/CloudTrail/eu-west-2/2024/03/12/210987654321_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/210987654321/CloudTrail/eu-west-2/2024/03/12/210987654321_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/210987654321/CloudTrail/eu-west-2/2024/03/12/210987654321_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/474417630776/CloudTrail/eu-west-2/2024/03/12/474417630776_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/474417630776/CloudTrail/eu-west-2/2024/03/12/474417630776_CloudTrail_eu-west-2_20240312T0900Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/474417630776/CloudTrail/eu-west-2/2024/03/12/474417630776_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/474417630776/CloudTrail/eu-west-2/2024/03/12/474417630776_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz"
        )),
    ),
    (
        "cloudtrail/AWSLogs/555566667777/CloudTrail/eu-west-2/2024/03/12/555566667777_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo/cloudtrail/AWSLogs/555566667777/CloudTrail/eu-west-2/2024/03/12/555566667777_CloudTrail_eu-west-2_20240312T0930Z_demo.json.gz"
        )),
    ),
];

pub const CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/demo/config.yaml"
));

#[cfg(test)]
mod tests {
    /// Every file of the demo folder is embedded, so the binary's demo is the folder's.
    #[test]
    fn every_demo_file_is_embedded() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p.to_string_lossy().to_string());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
        let mut on_disk = Vec::new();
        walk(&root.join("cluster"), &mut on_disk);
        walk(&root.join("cloudtrail"), &mut on_disk);
        let mut on_disk: Vec<String> = on_disk
            .into_iter()
            .map(|p| {
                p.strip_prefix(&format!("{}/", root.display()))
                    .unwrap()
                    .to_string()
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::CLUSTER
            .iter()
            .chain(super::CLOUDTRAIL)
            .map(|(n, _)| n.to_string())
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
