//! Rules into the quota: duplicates and covered rules removed, exact unions merged, then
//! the cheapest joins until the budget holds. Every step only adds packets.

use super::rule::{range_size, Cidr, Rule};
use super::*;

/// Removes duplicates and covered rules, and merges pairs whose union is a rule.
pub(super) fn simplify(rules: &mut Vec<Rule>) {
    rules.sort_by_key(Rule::sort_key);
    rules.dedup();
    let mut keep = vec![true; rules.len()];
    for i in 0..rules.len() {
        for j in 0..rules.len() {
            if i != j && keep[j] && rules[j].covers(&rules[i]) {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.iter();
    rules.retain(|_| *k.next().unwrap_or(&true));
    if rules.len() > MAX_PAIRWISE {
        return;
    }
    'again: loop {
        for i in 0..rules.len() {
            for j in i + 1..rules.len() {
                if let Some(m) = exact_union(&rules[i], &rules[j]) {
                    rules.swap_remove(j);
                    rules.swap_remove(i);
                    rules.retain(|r| !m.covers(r));
                    rules.push(m);
                    continue 'again;
                }
            }
        }
        break;
    }
}

/// The rule matching exactly what `a` or `b` matches, when there is one: ranges that touch,
/// or sibling blocks.
fn exact_union(a: &Rule, b: &Rule) -> Option<Rule> {
    if a.is_ipv6() != b.is_ipv6() || a.protocol != b.protocol {
        return None;
    }
    let touching = |x: Option<(u16, u16)>, y: Option<(u16, u16)>| match (x, y) {
        (Some(x), Some(y))
            if u32::from(x.0) <= u32::from(y.1) + 1 && u32::from(y.0) <= u32::from(x.1) + 1 =>
        {
            Some((x.0.min(y.0), x.1.max(y.1)))
        }
        _ => None,
    };
    let siblings = |x: Cidr, y: Cidr| {
        (x.prefix == y.prefix && x.prefix > 0 && x != y && x.join(&y).prefix == x.prefix - 1)
            .then(|| x.join(&y))
    };
    let mut m = a.clone();
    let same_nets = a.source == b.source && a.destination == b.destination;
    let same_ports = a.source_ports == b.source_ports && a.destination_ports == b.destination_ports;
    if same_nets && a.destination_ports == b.destination_ports {
        m.source_ports = Some(touching(a.source_ports, b.source_ports)?);
    } else if same_nets && a.source_ports == b.source_ports {
        m.destination_ports = Some(touching(a.destination_ports, b.destination_ports)?);
    } else if same_ports && a.destination == b.destination {
        m.source = siblings(a.source, b.source)?;
    } else if same_ports && a.source == b.source {
        m.destination = siblings(a.destination, b.destination)?;
    } else {
        return None;
    }
    Some(m)
}

#[derive(Default)]
struct Lost {
    ports: bool,
    addresses: bool,
    protocols: bool,
}

impl Lost {
    fn record(&mut self, from: &Rule, to: &Rule) {
        self.ports |= (from.has_ports() && !to.has_ports())
            || range_size(from.source_ports) < range_size(to.source_ports)
            || range_size(from.destination_ports) < range_size(to.destination_ports);
        self.addresses |= from.source.prefix > to.source.prefix
            || from.destination.prefix > to.destination.prefix;
        self.protocols |= from.protocol.is_some() && to.protocol.is_none();
    }
}

/// What a join gives up: protocols weigh most, then address bits, then ports.
fn join_cost(a: &Rule, b: &Rule, j: &Rule) -> (u32, u32, u64) {
    let mut cost = (0, 0, 0);
    for r in [a, b] {
        cost.0 += u32::from(r.protocol.is_some() && j.protocol.is_none());
        cost.1 += u32::from(r.source.prefix - j.source.prefix)
            + u32::from(r.destination.prefix - j.destination.prefix);
        cost.2 += range_size(j.source_ports) - range_size(r.source_ports)
            + range_size(j.destination_ports)
            - range_size(r.destination_ports);
    }
    cost
}

/// Widens `rules` until at most `budget` remain, each step the cheapest join of two rules
/// of one family. Every step only adds packets, so the result is still a superset.
pub(super) fn widen(
    rules: &mut Vec<Rule>,
    budget: usize,
    notes: &mut Notes,
) -> Result<(), BudgetTooSmall> {
    let needed = rules.len();
    if needed <= budget {
        return Ok(());
    }
    let mut lost = Lost::default();
    // Coarse passes first, so the pairwise search below stays small.
    let passes: [fn(&mut Rule); 3] = [
        |r| {
            r.source_ports = None;
            r.destination_ports = None;
        },
        |r| r.protocol = None,
        |r| {
            r.source = Cidr::any(r.is_ipv6());
            r.destination = Cidr::any(r.is_ipv6());
        },
    ];
    for pass in passes {
        if rules.len() <= MAX_PAIRWISE {
            break;
        }
        for r in rules.iter_mut() {
            let before = r.clone();
            pass(r);
            lost.record(&before, r);
        }
        simplify(rules);
    }
    while rules.len() > budget {
        // Ties go to the same protocol in both families first, for symmetric results.
        rules.sort_by_key(|r| (r.protocol, r.sort_key()));
        let mut best = None;
        for i in 0..rules.len() {
            for j in i + 1..rules.len() {
                if rules[i].is_ipv6() != rules[j].is_ipv6() {
                    continue;
                }
                let cost = join_cost(&rules[i], &rules[j], &rules[i].join(&rules[j]));
                if best.is_none_or(|(c, _, _)| cost < c) {
                    best = Some((cost, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else {
            break;
        };
        let joined = rules[i].join(&rules[j]);
        lost.record(&rules[i], &joined);
        lost.record(&rules[j], &joined);
        rules.swap_remove(j);
        rules.swap_remove(i);
        rules.retain(|r| !joined.covers(r));
        rules.push(joined);
    }
    if rules.len() > budget {
        let needed = rules.len();
        rules.clear();
        return Err(BudgetTooSmall { needed, budget });
    }
    let what: Vec<&str> = [
        (lost.ports, "port ranges"),
        (lost.addresses, "address blocks"),
        (lost.protocols, "protocols"),
    ]
    .iter()
    .filter(|(l, _)| *l)
    .map(|(_, w)| *w)
    .collect();
    notes.push(format!(
        "The filter needs {needed} mirror rules per direction but {budget} are free: widened {} (AWS mirrors more; awsvpc still filters exactly).",
        if what.is_empty() { "rules".to_string() } else { what.join(", ") }
    ));
    Ok(())
}
