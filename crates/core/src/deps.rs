//! Dependency graph checks.

use crate::id::TicketId;
use std::collections::{HashMap, HashSet};

/// Would giving `ticket` the dependencies `new_deps` close a cycle?
///
/// `edges` holds the current dependency edges (`a` depends on `b`) of every ticket reachable from
/// `new_deps`; the store loads that closure. Returns the cycle as a path starting and ending at
/// `ticket`, e.g. `[MC-1, MC-2, MC-1]`.
pub fn find_cycle(
    ticket: &TicketId,
    new_deps: &[TicketId],
    edges: &HashMap<TicketId, Vec<TicketId>>,
) -> Option<Vec<TicketId>> {
    // Depth-first search from each new dependency, looking for a path back to `ticket`.
    let mut visited: HashSet<&TicketId> = HashSet::new();
    for start in new_deps {
        let mut stack: Vec<(&TicketId, Vec<&TicketId>)> = vec![(start, vec![start])];
        while let Some((node, path)) = stack.pop() {
            if node == ticket {
                let mut cycle = vec![ticket.clone()];
                cycle.extend(path.into_iter().cloned());
                return Some(cycle);
            }
            if !visited.insert(node) {
                continue;
            }
            for next in edges.get(node).map(Vec::as_slice).unwrap_or_default() {
                let mut next_path = path.clone();
                next_path.push(next);
                stack.push((next, next_path));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TicketKey;

    fn id(n: i64) -> TicketId {
        TicketId::new(&TicketKey::default(), n)
    }

    fn graph(edges: &[(i64, i64)]) -> HashMap<TicketId, Vec<TicketId>> {
        let mut map: HashMap<TicketId, Vec<TicketId>> = HashMap::new();
        for (a, b) in edges {
            map.entry(id(*a)).or_default().push(id(*b));
        }
        map
    }

    fn check(ticket: i64, deps: &[i64], edges: &[(i64, i64)], expect: Option<&[i64]>) {
        let deps: Vec<TicketId> = deps.iter().copied().map(id).collect();
        let got = find_cycle(&id(ticket), &deps, &graph(edges));
        let want = expect.map(|path| path.iter().copied().map(id).collect::<Vec<_>>());
        assert_eq!(got, want, "ticket {ticket} deps {deps:?} edges {edges:?}");
    }

    #[test]
    fn cycles() {
        check(1, &[2], &[], None);
        check(1, &[1], &[], Some(&[1, 1]));
        check(1, &[2], &[(2, 1)], Some(&[1, 2, 1]));
        check(1, &[2], &[(2, 3), (3, 1)], Some(&[1, 2, 3, 1]));
        check(1, &[2, 4], &[(2, 3), (4, 3)], None);
        // A diamond that does not come back is fine, and a cycle elsewhere is not ours to report.
        check(1, &[2], &[(2, 3), (3, 2)], None);
    }
}
