//! The `dataCid` of a record: the root CID that ipfs-unixfs-importer 15.1.5 produces with
//! `{cidVersion: 1}` (dwn-sdk-js `Cid.computeDagPbCidFromStream`), computed while the data
//! streams past.
//!
//! What the importer does with its defaults, and therefore what we do:
//!
//! * The fixed-size chunker cuts the data into 262,144-byte chunks; the last one may be shorter.
//!   Empty data is one empty chunk.
//! * Every chunk is a *raw leaf*: CIDv1, codec raw (0x55), sha2-256 of the chunk bytes.
//! * A file of exactly one chunk is that leaf's CID (`reduceSingleLeafToSelf`), so data up to
//!   256 KiB, empty data included, has a `bafkrei…` CID.
//! * Otherwise the "balanced" layout groups the leaves into batches of at most 174, turns each
//!   batch into a UnixFS `file` node in dag-pb (0x70), and repeats on the nodes until one root
//!   is left. A batch of one is still wrapped in a node; only a single-chunk file is not.
//!
//! Batches are fixed from the start of each level, so a full batch of 174 can be folded into
//! its parent node at once. The builder therefore holds at most 173 pending links per tree
//! level plus the running hash of the current chunk: memory does not grow with the data.
//!
//! The dag-pb and UnixFS protobufs are written here by hand (they are tiny), mirroring
//! `@ipld/dag-pb` 4 and `ipfs-unixfs` 11: a PBNode lists its Links (field 2) *before* its Data
//! (field 1); each PBLink has Hash (1), Name (2, the empty string is still written) and Tsize
//! (3: the block size of a raw leaf, or a node's block size plus its children's Tsizes); the
//! UnixFS Data has Type (1, file = 2), filesize (3) and one blocksizes entry (4) per child
//! holding that child's file-byte count.

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::cid::{DAG_PB, RAW, SHA2_256, cid_of};

/// The importer's fixed chunk size.
pub const CHUNK_SIZE: usize = 262_144;
/// The balanced layout's `maxChildrenPerNode`.
pub const MAX_CHILDREN_PER_NODE: usize = 174;

/// A finished `dataCid` and the number of bytes it covers (the record's `dataSize`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataCid {
    pub cid: String,
    pub size: u64,
}

/// A child of a file node, as the parent needs it.
#[derive(Clone, Copy)]
struct Link {
    cid: Cid,
    /// PBLink `Tsize`: the block's size plus, for a node, the Tsizes of everything below it.
    tsize: u64,
    /// File bytes under this link (the parent's `blocksizes` entry).
    file_size: u64,
}

/// Streaming `dataCid`: feed the data with [`update`](Self::update) (or `std::io::Write`) in
/// pieces of any size, then call [`finish`](Self::finish).
#[derive(Clone)]
pub struct DataCidBuilder {
    /// [`CHUNK_SIZE`] and [`MAX_CHILDREN_PER_NODE`], except in tests that build deep trees
    /// from little data.
    chunk_size: usize,
    max_children: usize,
    /// Running hash of the current chunk; chunks are never buffered.
    chunk_hash: Sha256,
    chunk_len: usize,
    chunks: u64,
    size: u64,
    /// `levels[0]` holds leaves, `levels[n]` nodes of height `n`, each fewer than
    /// `max_children`.
    levels: Vec<Vec<Link>>,
}

impl Default for DataCidBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DataCidBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataCidBuilder")
            .field("size", &self.size)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl DataCidBuilder {
    pub fn new() -> Self {
        Self::with_shape(CHUNK_SIZE, MAX_CHILDREN_PER_NODE)
    }

    /// A builder with another chunk size and fan-out, to test the tree logic on small data.
    fn with_shape(chunk_size: usize, max_children: usize) -> Self {
        Self {
            chunk_size,
            max_children,
            chunk_hash: Sha256::new(),
            chunk_len: 0,
            chunks: 0,
            size: 0,
            levels: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds the next piece of data.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (self.chunk_size - self.chunk_len).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.chunk_hash.update(head);
            self.chunk_len += take;
            bytes = rest;
            // The chunker emits a full chunk as soon as it has one, even if no data follows.
            if self.chunk_len == self.chunk_size {
                self.end_chunk();
            }
        }
    }

    fn end_chunk(&mut self) {
        let digest = std::mem::take(&mut self.chunk_hash).finalize();
        let hash =
            cid::multihash::Multihash::<64>::wrap(SHA2_256, digest.as_slice()).unwrap_or_default();
        let len = self.chunk_len as u64;
        self.chunk_len = 0;
        self.chunks += 1;
        self.push(
            0,
            Link {
                cid: Cid::new_v1(RAW, hash),
                tsize: len,
                file_size: len,
            },
        );
    }

    /// Adds a link at `level`, folding a full batch into a node one level up.
    fn push(&mut self, level: usize, link: Link) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(link);
        if self.levels[level].len() == self.max_children {
            let batch = std::mem::take(&mut self.levels[level]);
            self.push(level + 1, file_node(&batch));
        }
    }

    /// The root CID and the total size.
    pub fn finish(mut self) -> DataCid {
        // The trailing partial chunk, or the single empty chunk of empty data.
        if self.chunk_len > 0 || self.chunks == 0 {
            self.end_chunk();
        }
        let size = self.size;
        let mut level = 0;
        let root = loop {
            let above = self.levels.iter().skip(level + 1).any(|l| !l.is_empty());
            let pending = self
                .levels
                .get_mut(level)
                .map(std::mem::take)
                .unwrap_or_default();
            match (above, pending.as_slice()) {
                // One item left on the top level: the root. For a one-chunk file this is the
                // raw leaf itself; otherwise it is a node (a lone leaf is never on top then).
                (false, [only]) => break only.cid,
                (_, []) => {}
                (_, batch) => {
                    let node = file_node(batch);
                    self.push(level + 1, node);
                }
            }
            level += 1;
        };
        DataCid {
            cid: root.to_string(),
            size,
        }
    }
}

impl std::io::Write for DataCidBuilder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field (wire type 2).
fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint protobuf field (wire type 0).
fn put_uint(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(field << 3);
    put_varint(out, v);
}

/// The UnixFS `file` node (dag-pb block) linking `children`, as the importer's reducer builds it.
fn file_node(children: &[Link]) -> Link {
    let file_size: u64 = children.iter().map(|c| c.file_size).sum();

    let mut data = Vec::with_capacity(8 + 5 * children.len());
    put_uint(&mut data, 1, 2); // Type = file
    put_uint(&mut data, 3, file_size);
    for child in children {
        put_uint(&mut data, 4, child.file_size);
    }

    let mut block = Vec::with_capacity(50 * children.len() + data.len() + 4);
    let mut link = Vec::with_capacity(50);
    for child in children {
        link.clear();
        put_bytes(&mut link, 1, &child.cid.to_bytes());
        put_bytes(&mut link, 2, b"");
        put_uint(&mut link, 3, child.tsize);
        put_bytes(&mut block, 2, &link);
    }
    put_bytes(&mut block, 1, &data);

    let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    Link {
        cid: cid_of(DAG_PB, &block),
        tsize,
        file_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `len` bytes of `i % 251` through `builder` in pieces. The piece length is a
    /// multiple of 251, so one buffer serves the whole stream.
    fn feed_modulo_251(mut builder: DataCidBuilder, len: usize) -> DataCid {
        let pattern: Vec<u8> = (0..251 * 261).map(|i| (i % 251) as u8).collect();
        let mut left = len;
        while left > 0 {
            let n = pattern.len().min(left);
            builder.update(&pattern[..n]);
            left -= n;
        }
        builder.finish()
    }

    fn modulo_251(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn one_chunk_is_a_raw_leaf() {
        assert_eq!(
            DataCidBuilder::new().finish(),
            DataCid {
                cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
                size: 0
            }
        );
        let mut b = DataCidBuilder::new();
        b.update(b"abc");
        assert_eq!(
            b.finish(),
            DataCid {
                cid: "bafkreif2pall7dybz7vecqka3zo24irdwabwdi4wc55jznaq75q7eaavvu".into(),
                size: 3
            }
        );
    }

    /// RUST-STACK.md §2.2: 1,000,000 bytes of `i % 251` (4 chunks, one node).
    #[test]
    fn one_megabyte_matches_the_importer() {
        let done = feed_modulo_251(DataCidBuilder::new(), 1_000_000);
        assert_eq!(
            done,
            DataCid {
                cid: "bafybeibx62obrkybp46hx3ivh53q4rnptgkunpgtwiib5lfelfgt2ekihm".into(),
                size: 1_000_000
            }
        );
    }

    /// RUST-STACK.md §2.2: 60,000,000 bytes of `i % 251` (229 chunks, a two-level tree).
    #[test]
    fn two_level_tree_matches_the_importer() {
        let done = feed_modulo_251(DataCidBuilder::new(), 60_000_000);
        assert_eq!(
            done,
            DataCid {
                cid: "bafybeigam5dpll7feslqch2gt766vzamdrktqvcevpwul76d5cu6snb57e".into(),
                size: 60_000_000
            }
        );
    }

    /// Chunk and batch edges with the real shape, from ipfs-unixfs-importer 15.1.5 in Node.js
    /// over `i % 251`: one byte short of a chunk, exactly one chunk (still a raw leaf), one
    /// byte more (a node), exactly 174 chunks (one node) and 175 (the lone last leaf gets its
    /// own node under a new root).
    #[test]
    fn chunk_and_batch_edges_match_the_importer() {
        let c = CHUNK_SIZE;
        for (len, expected) in [
            (
                c - 1,
                "bafkreiagptg6ztonoojy4wflk3wwusl5xt4vcy6uult4wa7oemsjtxhjsu",
            ),
            (
                c,
                "bafkreibruh455iawsviqslif5c7uurdcfdemh22mtnytyzvnzn75kpejxy",
            ),
            (
                c + 1,
                "bafybeiexg2oqkfnj56l7fcmawswqbijt5shq4b5rg6a546uwpkqqzwjioi",
            ),
            (
                2 * c,
                "bafybeihjlsmgtdumwxouubhh32wpo5k73zuptoz5bcxxcx3tflxmhyct2a",
            ),
            (
                174 * c,
                "bafybeihpe5snhzneq7xs53nivmsopto5lrogo3wjynauqylqeym5a3irbm",
            ),
            (
                174 * c + 1,
                "bafybeib4y7ghw2rq7bracc4xwtxrbzo7cfvagdpte2tmrkgwl6dyard3cm",
            ),
        ] {
            assert_eq!(
                feed_modulo_251(DataCidBuilder::new(), len).cid,
                expected,
                "{len} bytes"
            );
        }
    }

    /// Deep trees on little data: the importer run in Node.js with
    /// `chunker: fixedSize({chunkSize: 16})` and `layout: balanced({maxChildrenPerNode: 3})`
    /// over `i % 251`. 1,296 bytes are exactly 3^4 chunks (a full four-level tree); 1,297 add a
    /// lone leaf that gets wrapped once per level.
    #[test]
    fn deep_trees_match_the_importer() {
        for (len, expected) in [
            (
                0,
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ),
            (
                1,
                "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
            ),
            (
                15,
                "bafkreidqoh6ddch547t6kaguo2hrpbf63yncf2mrmsg4voo4gim2z7y5jq",
            ),
            (
                16,
                "bafkreif6ixfsmbn7g27l3zueqqncr4h5ipdjqufd3ts75w5gteuo4oujse",
            ),
            (
                17,
                "bafybeigoy2pjprxoufrlr6ez2td53kauu5ndaysnim7ggo2e3b64eaj2bi",
            ),
            (
                32,
                "bafybeiec3ljqatntdnrxqzps5c32zetnyu4y6rdjelg4mfcxpwqqlzi7km",
            ),
            (
                48,
                "bafybeifso5gvlkpo6oth5qb4i2kwr2l6cqr3nbswfenqvvpcp657obvady",
            ),
            (
                49,
                "bafybeicz4slehp3a553s3vsqeqc7at7zugxovupv2odgp64jczb2g3vhoy",
            ),
            (
                64,
                "bafybeigfrzkxykxoci2franguwweqhbskaeqw53iktb73etih57hho7p54",
            ),
            (
                143,
                "bafybeidxdxrlvm6n5wkrazpekdq4vpiliic676ekvsz7e72xl6djme3lki",
            ),
            (
                144,
                "bafybeifzyhkjt3p3ijr2evwxylvln7tlmkyymr3b6auuuvpzngm2ccpckq",
            ),
            (
                145,
                "bafybeigbw7hh3toisd7xwtvs2h24txyodzojohiphlxmupm74uclsoc6ei",
            ),
            (
                160,
                "bafybeicve3wgiyfe2rdhpog24wtrg3desekwcrikac3tpsdhmb6psonwye",
            ),
            (
                193,
                "bafybeihfvuqfztiikou6eoabroz3frhzpbbdt2tutabtrhpzqpdoihvywe",
            ),
            (
                432,
                "bafybeiesn5wj36lm7xxkjd5ze2gff6bqdkz5lynaubmzyvqobqucwottym",
            ),
            (
                433,
                "bafybeib2mroglz6gqbqcv2cghwgcujkskp4gi4kwoqvml6efqmaooxia5m",
            ),
            (
                449,
                "bafybeig7h76ekkj2a4c5lg7nzgje2ve4uk7xsxgibve2v2f5zlzftzk624",
            ),
            (
                1000,
                "bafybeihngaak4hocknppryqnkyztdifkwo3q5cc34czug2zdrth655ckxq",
            ),
            (
                1296,
                "bafybeic6wv2wlkb2xjqlvxxbjggpdizuoqvkvude52lae6o6glm7c5qxbu",
            ),
            (
                1297,
                "bafybeiasjktg2kahfkgarlz3rv6m4riuop2q6knmebqwad664yvgslv5he",
            ),
            (
                3889,
                "bafybeiapt6jv3b2onihflamoh7tll7lkv26shsqujd6cvg5ms7qazxdnj4",
            ),
        ] {
            let done = feed_modulo_251(DataCidBuilder::with_shape(16, 3), len);
            assert_eq!(done.cid, expected, "{len} bytes");
            assert_eq!(done.size, len as u64);
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let mut b = DataCidBuilder::with_shape(16, 3);
        b.update(&[7; 16 * 1000]);
        // 1000 chunks in base 3 is 1101001: one pending link per non-zero digit.
        assert!(b.levels.iter().all(|l| l.len() < 3));
        assert_eq!(b.levels.iter().map(Vec::len).sum::<usize>(), 4);
    }

    #[test]
    fn io_write_is_the_same_as_update() {
        let data = modulo_251(600_000);
        let mut builder = DataCidBuilder::new();
        std::io::copy(&mut data.as_slice(), &mut builder).unwrap();
        assert_eq!(builder.finish().cid, crate::cid::data_cid(&data));
    }

    /// Feeds `data` cut at `cuts` (clamped and sorted).
    fn feed_in_pieces(mut builder: DataCidBuilder, data: &[u8], cuts: Vec<usize>) -> DataCid {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for cut in cuts.into_iter().chain([data.len()]) {
            builder.update(&data[at..cut]);
            at = cut;
        }
        builder.finish()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Feeding the data in arbitrary pieces never changes the CID (real shape).
        #[test]
        fn piece_sizes_do_not_matter(len in 0usize..(3 * CHUNK_SIZE + 1000), cuts in proptest::collection::vec(0usize..(3 * CHUNK_SIZE + 1000), 0..12)) {
            let data = modulo_251(len);
            let done = feed_in_pieces(DataCidBuilder::new(), &data, cuts);
            prop_assert_eq!(done.size, len as u64);
            prop_assert_eq!(done.cid, crate::cid::data_cid(&data));
        }

        /// The same through deep trees (small shape).
        #[test]
        fn piece_sizes_do_not_matter_in_deep_trees(len in 0usize..2000, cuts in proptest::collection::vec(0usize..2000, 0..40)) {
            let data = modulo_251(len);
            let whole = feed_in_pieces(DataCidBuilder::with_shape(16, 3), &data, vec![]);
            let done = feed_in_pieces(DataCidBuilder::with_shape(16, 3), &data, cuts);
            prop_assert_eq!(done, whole);
        }
    }
}
