//! The UnixFS `dataCid` of ipfs-unixfs-importer 15.1.5 with `{cidVersion: 1}`, computed while
//! data streams past.
//!
//! The importer cuts data into 262,144-byte chunks and stores each as a raw block (CIDv1, codec
//! raw). One chunk is its own CID. More chunks are linked by UnixFS `file` nodes in dag-pb, at
//! most 174 links per node, level by level until one root remains (the "balanced" layout). Only
//! the leaves' CIDs and sizes are kept, never the data.

use crate::cid::{DAG_PB, RAW, cid_of};

const CHUNK_SIZE: usize = 262_144;
const MAX_CHILDREN: usize = 174;

/// A finished `dataCid` and the number of bytes it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataCid {
    pub cid: String,
    pub size: u64,
}

/// One node of the tree: its CID bytes, its cumulative block size (`Tsize`) and the number of
/// file bytes under it.
#[derive(Clone)]
struct Node {
    cid: Vec<u8>,
    tsize: u64,
    file_size: u64,
}

/// Streaming `dataCid`: feed bytes with [`update`](Self::update) in chunks of any size.
pub struct DataCidBuilder {
    chunk: Vec<u8>,
    leaves: Vec<Node>,
    size: u64,
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
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl DataCidBuilder {
    pub fn new() -> Self {
        Self {
            chunk: Vec::with_capacity(CHUNK_SIZE),
            leaves: Vec::new(),
            size: 0,
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHUNK_SIZE - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.chunk.len() == CHUNK_SIZE {
                self.flush_chunk();
            }
        }
    }

    fn flush_chunk(&mut self) {
        let cid = cid_of(RAW, &self.chunk).to_bytes();
        let len = self.chunk.len() as u64;
        self.leaves.push(Node {
            cid,
            tsize: len,
            file_size: len,
        });
        self.chunk.clear();
    }

    pub fn finish(mut self) -> DataCid {
        // The last partial chunk, or the single empty chunk of empty data.
        if !self.chunk.is_empty() || self.leaves.is_empty() {
            self.flush_chunk();
        }
        let size = self.size;
        if self.leaves.len() == 1 {
            let cid = cid_of(RAW, &[]).to_string();
            let only = &self.leaves[0].cid;
            let cid = cid::Cid::try_from(only.as_slice())
                .map(|c| c.to_string())
                .unwrap_or(cid);
            return DataCid { cid, size };
        }
        let mut level = std::mem::take(&mut self.leaves);
        while level.len() > 1 {
            level = level.chunks(MAX_CHILDREN).map(parent).collect();
        }
        let root = &level[0];
        let cid = cid::Cid::try_from(root.cid.as_slice())
            .map(|c| c.to_string())
            .unwrap_or_default();
        DataCid { cid, size }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A UnixFS `file` node linking `children`, encoded as dag-pb.
fn parent(children: &[Node]) -> Node {
    // UnixFS Data: Type = file (field 1), filesize (field 3), blocksizes (field 4, unpacked).
    let file_size: u64 = children.iter().map(|c| c.file_size).sum();
    let mut data = vec![0x08, 0x02, 0x18];
    put_varint(&mut data, file_size);
    for child in children {
        data.push(0x20);
        put_varint(&mut data, child.file_size);
    }
    // PBNode: Links (field 2) first, then Data (field 1). PBLink: Hash, Name (empty), Tsize.
    let mut block = Vec::new();
    for child in children {
        let mut link = Vec::new();
        put_bytes_field(&mut link, 0x0a, &child.cid);
        put_bytes_field(&mut link, 0x12, b"");
        link.push(0x18);
        put_varint(&mut link, child.tsize);
        put_bytes_field(&mut block, 0x12, &link);
    }
    put_bytes_field(&mut block, 0x0a, &data);
    let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
    Node {
        cid: cid_of(DAG_PB, &block).to_bytes(),
        tsize,
        file_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn multi_chunk_data_matches_the_importer() {
        let mut b = DataCidBuilder::new();
        b.update(&pattern(1_000_000));
        assert_eq!(
            b.finish().cid,
            "bafybeibx62obrkybp46hx3ivh53q4rnptgkunpgtwiib5lfelfgt2ekihm"
        );
        let mut b = DataCidBuilder::new();
        b.update(&[b'a'; 300_000]);
        assert_eq!(
            b.finish().cid,
            "bafybeicnrogxohr6rp6rlbv6s4q5gkpx5cmlm3oxqr3a7sfghbnz6sdyvq"
        );
    }

    #[test]
    fn two_level_tree_matches_the_importer() {
        let mut b = DataCidBuilder::new();
        let data = pattern(60_000_000);
        for piece in data.chunks(1_000_003) {
            b.update(piece);
        }
        let done = b.finish();
        assert_eq!(done.size, 60_000_000);
        assert_eq!(
            done.cid,
            "bafybeigam5dpll7feslqch2gt766vzamdrktqvcevpwul76d5cu6snb57e"
        );
    }
}
