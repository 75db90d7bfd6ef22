//! The evaluations of a cycle, in blocks of a fixed size. The planner consumes
//! them in order and each block is freed as soon as it is used up: held in one
//! list, they were freed half at a time, each half copied first, so at a million
//! users the list (126 MB), its copy and the growing plan were all held at once
//! (the initial cycle's peak).

use super::Evaluated;

/// How many evaluations a block holds (about 1 MB).
const BLOCK: usize = 8192;

/// Evaluations in the order they were made.
#[derive(Debug, Default)]
pub struct Evaluations {
    blocks: Vec<Vec<Evaluated>>,
    len: usize,
}

impl Evaluations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, e: Evaluated) {
        match self.blocks.last_mut() {
            Some(block) if block.len() < BLOCK => block.push(e),
            // The first block grows as needed (a cycle over a few changes holds a
            // few); the others are made whole.
            last => {
                let mut block = match last {
                    None => Vec::new(),
                    Some(_) => Vec::with_capacity(BLOCK),
                };
                block.push(e);
                self.blocks.push(block);
            }
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Evaluated> {
        self.blocks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Evaluated> {
        self.blocks.iter_mut().flatten()
    }

    /// Users first, then groups, each in the order they came (a read lists
    /// unreadable records last, whatever their kind).
    pub fn by_kind(self) -> Self {
        if self.iter().is_sorted_by_key(|e| e.kind) {
            return self;
        }
        let (users, groups): (Vec<_>, Vec<_>) = self
            .into_iter()
            .partition(|e| e.kind == crate::model::ObjectKind::User);
        users.into_iter().chain(groups).collect()
    }
}

/// Consumed in order, each block freed once used up.
impl IntoIterator for Evaluations {
    type Item = Evaluated;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<Evaluated>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.blocks.into_iter().flatten()
    }
}

impl<'a> IntoIterator for &'a Evaluations {
    type Item = &'a Evaluated;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<Evaluated>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.blocks.iter().flatten()
    }
}

impl FromIterator<Evaluated> for Evaluations {
    fn from_iter<I: IntoIterator<Item = Evaluated>>(iter: I) -> Self {
        let mut out = Evaluations::new();
        out.extend(iter);
        out
    }
}

impl Extend<Evaluated> for Evaluations {
    fn extend<I: IntoIterator<Item = Evaluated>>(&mut self, iter: I) {
        for e in iter {
            self.push(e);
        }
    }
}

impl From<Vec<Evaluated>> for Evaluations {
    fn from(v: Vec<Evaluated>) -> Self {
        v.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Decision;
    use crate::model::ObjectKind;

    fn evaluated(kind: ObjectKind, id: usize) -> Evaluated {
        Evaluated {
            kind,
            source_id: format!("{id}").into(),
            display: "".into(),
            decision: Decision::SoftDeleted,
            attrs: None,
            members: Default::default(),
            spilled: None,
        }
    }

    /// A cycle holds an evaluation per object until it is planned: its ids are
    /// boxed strings (no spare capacity, 16 bytes each, not 24).
    #[test]
    fn an_evaluation_stays_small() {
        let size = std::mem::size_of::<Evaluated>();
        assert!(size <= 104, "an evaluation is {size} bytes");
    }

    #[test]
    fn evaluations_keep_their_order_across_blocks() {
        for n in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7] {
            let list: Evaluations = (0..n).map(|i| evaluated(ObjectKind::User, i)).collect();
            assert_eq!(list.len(), n);
            assert_eq!(list.blocks.len(), n.div_ceil(BLOCK));
            let ids: Vec<String> = list.iter().map(|e| e.source_id.to_string()).collect();
            let expected: Vec<String> = (0..n).map(|i| format!("{i}")).collect();
            assert_eq!(ids, expected);
            let consumed: Vec<String> = list.into_iter().map(|e| e.source_id.into()).collect();
            assert_eq!(consumed, expected);
        }
    }

    #[test]
    fn users_come_before_groups_each_in_their_order() {
        let kinds = [
            ObjectKind::User,
            ObjectKind::Group,
            ObjectKind::User,
            ObjectKind::Group,
        ];
        let list: Evaluations = (0..2 * BLOCK + 3)
            .map(|i| evaluated(kinds[i % 4], i))
            .collect();
        let sorted = list.by_kind();
        let order: Vec<(ObjectKind, usize)> = sorted
            .iter()
            .map(|e| (e.kind, e.source_id.parse().unwrap_or(usize::MAX)))
            .collect();
        let users = order.iter().take_while(|(k, _)| *k == ObjectKind::User);
        assert_eq!(users.count(), BLOCK + 2);
        assert!(order
            .iter()
            .skip(BLOCK + 2)
            .all(|(k, _)| *k == ObjectKind::Group));
        let ids = |kind| {
            order
                .iter()
                .filter(move |(k, _)| *k == kind)
                .map(|(_, i)| *i)
        };
        assert!(ids(ObjectKind::User).is_sorted() && ids(ObjectKind::Group).is_sorted());
    }
}
