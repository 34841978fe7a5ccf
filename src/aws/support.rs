//! Which ENIs can be traffic mirror sources. The restriction applies to the source
//! instance's type (the target can be anything); the lists are AWS's published limitations
//! (aws-traffic-mirroring.md §2.2).

/// Virtualized Nitro families AWS lists as unavailable for mirroring.
const UNSUPPORTED_NITRO: &[&str] = &[
    "m8g", "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "c8g",
    "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "r8g",
    "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "x8g", "x2idn",
    "x2iedn", "x2iezn", "i4g", "i4i", "im4gn", "is4gen", "inf2", "p5", "trn1", "trn1n", "hpc6a",
    "hpc6id", "hpc7a", "hpc7g",
];

/// Xen (non-Nitro) families; of these only the ones in `SUPPORTED_XEN` can be sources.
const XEN: &[&str] = &[
    "t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "i2", "i3", "d2", "g2", "g3",
    "g3s", "h1", "p2", "p3", "x1", "x1e", "cc2", "cr1", "hs1", "f1",
];
const SUPPORTED_XEN: &[&str] = &[
    "c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e",
];

/// Why an instance of `instance_type` cannot be a mirror source, or `None` if it can.
pub fn unsupported_reason(instance_type: &str) -> Option<String> {
    let t = instance_type.trim().to_ascii_lowercase();
    let (family, size) = t.split_once('.').unwrap_or((&t, ""));
    if size == "metal" || size.starts_with("metal-") {
        return Some(format!("{instance_type} is a bare metal instance type, which cannot be a traffic mirror source"));
    }
    if UNSUPPORTED_NITRO.contains(&family) {
        return Some(format!(
            "AWS does not support traffic mirroring from {family} instances ({instance_type})"
        ));
    }
    if XEN.contains(&family) && !SUPPORTED_XEN.contains(&family) {
        return Some(format!(
            "{instance_type} is a previous-generation (Xen) type, which cannot be a traffic mirror source"
        ));
    }
    None
}

/// Why an ENI cannot be a mirror source, given its interface type and, when attached to an
/// instance, that instance's type.
pub fn eni_unsupported_reason(interface_type: &str, instance_type: Option<&str>) -> Option<String> {
    if !interface_type.is_empty() && interface_type != "interface" {
        return Some(format!(
            "it is a {interface_type} interface; only ENIs of type \"interface\" can be mirrored"
        ));
    }
    instance_type.and_then(unsupported_reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_limitations() {
        for ok in [
            "m5.large",
            "t3.micro",
            "t4g.nano",
            "c5n.18xlarge",
            "m6g.large",
            "r5.2xlarge",
            "m4.large",
            "c4.xlarge",
        ] {
            assert_eq!(unsupported_reason(ok), None, "{ok}");
        }
        for bad in [
            "c6i.large",
            "m7g.medium",
            "m7i-flex.large",
            "t2.micro",
            "m5.metal",
            "c6gn.large",
            "r7iz.xlarge",
            "m3.medium",
        ] {
            assert!(unsupported_reason(bad).is_some(), "{bad}");
        }
        assert!(eni_unsupported_reason("nat_gateway", None)
            .unwrap()
            .contains("nat_gateway"));
        assert_eq!(eni_unsupported_reason("interface", Some("m5.large")), None);
    }
}
