//! Load-balancing schedules, precomputed when an endpoint set changes so a pick is a few
//! arithmetic operations and at most one binary search.

use xxhash_rust::xxh3::xxh3_64;

/// Smooth weighted round robin (nginx's algorithm), unrolled into one cycle of endpoint
/// indexes: weights 5,1,1 give `a a b a c a a`, not `a a a a a b c`.
pub fn round_robin_schedule(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    // Cap the cycle: beyond this, scale weights down (keeps ratios to within 1%).
    const MAX: u64 = 4096;
    let scaled: Vec<i64> = if total > MAX {
        weights
            .iter()
            .map(|w| ((u64::from(*w) * MAX).div_ceil(total)).max(1) as i64)
            .collect()
    } else {
        weights.iter().map(|w| i64::from(*w)).collect()
    };
    let total: i64 = scaled.iter().sum();
    let mut current = vec![0i64; scaled.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..scaled.len() {
            current[i] += scaled[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// Running sums of weights, for a weighted random pick by binary search.
pub fn cumulative(weights: &[u32]) -> Vec<u64> {
    let mut sum = 0;
    weights
        .iter()
        .map(|w| {
            sum += u64::from(*w);
            sum
        })
        .collect()
}

pub fn weighted_random(cum: &[u64]) -> usize {
    let total = *cum.last().unwrap_or(&0);
    if total == 0 {
        return 0;
    }
    let x = fastrand::u64(0..total);
    cum.partition_point(|c| *c <= x)
}

/// A consistent-hash ring (Ketama style): each endpoint owns points proportional to its
/// weight; a key maps to the first point at or after its hash. Adding or removing one
/// endpoint moves only the keys that endpoint owns.
pub fn ring(keys: &[String], weights: &[u32]) -> Vec<(u64, u32)> {
    // A fixed number of points per unit of weight (not one derived from the endpoint
    // count), so an endpoint's points stay put when others come and go.
    const MAX_RING: u64 = 1 << 20;
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum::<u64>().max(1);
    let per_weight = (MAX_RING / total).clamp(1, 256);
    let mut ring = Vec::with_capacity((total * per_weight) as usize);
    for (i, (key, w)) in keys.iter().zip(weights).enumerate() {
        for r in 0..u64::from(*w) * per_weight {
            ring.push((xxh3_64(format!("{key}_{r}").as_bytes()), i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

pub fn ring_lookup(ring: &[(u64, u32)], hash: u64) -> usize {
    if ring.is_empty() {
        return 0;
    }
    let i = ring.partition_point(|(h, _)| *h < hash);
    ring[if i == ring.len() { 0 } else { i }].1 as usize
}

pub fn hash_key(value: &[u8]) -> u64 {
    xxh3_64(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_round_robin_interleaves() {
        assert_eq!(round_robin_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(round_robin_schedule(&[1, 1, 1]), vec![0, 1, 2]);
        let big = round_robin_schedule(&[10_000, 10_000, 1]);
        assert!(big.len() <= 4096 + 3);
        assert!(big.contains(&2));
    }

    #[test]
    fn weighted_random_follows_weights() {
        let cum = cumulative(&[1, 3]);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[weighted_random(&cum)] += 1;
        }
        let ratio = f64::from(counts[1]) / f64::from(counts[0]);
        assert!((2.7..3.3).contains(&ratio), "{counts:?}");
    }

    #[test]
    fn ring_is_stable_and_spread() {
        let keys: Vec<String> = ["a:1", "b:1", "c:1"].map(String::from).to_vec();
        let r = ring(&keys, &[1, 1, 1]);
        assert_eq!(r.len(), 3 * 256);
        let mut counts = [0u32; 3];
        for i in 0..3000u32 {
            counts[ring_lookup(&r, hash_key(&i.to_le_bytes()))] += 1;
        }
        assert!(counts.iter().all(|c| *c > 600), "{counts:?}");
        // Removing endpoint c moves only c's keys.
        let r2 = ring(&keys[..2], &[1, 1]);
        for i in 0..3000u32 {
            let h = hash_key(&i.to_le_bytes());
            let before = ring_lookup(&r, h);
            if before != 2 {
                assert_eq!(ring_lookup(&r2, h), before);
            }
        }
    }
}
