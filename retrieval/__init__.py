"""tagsmith retrieval: embed products, find similar tagged examples, propose candidate tags.

- :class:`Embedder` (protocol) and :class:`SentenceTransformerEmbedder` (packaged
  all-MiniLM-L6-v2 by default, any local sentence-transformers directory by configuration);
  :class:`CachedEmbedder` + :class:`EmbeddingCache` skip texts already encoded;
  :class:`HashingEmbedder` is the deterministic model-free embedder for tests.
- :func:`product_text`: product → embedder text with a deliberate truncation policy.
- :class:`ExampleIndex`: FAISS over tagged :class:`Example` records with stable string ids.
- :class:`IndexStore`: checksummed generations, switched atomically, verified on load.
- :class:`LexicalClassifier`: TF-IDF + linear SVM trained on the examples (second signal).
- :class:`CandidateGenerator`: neighbours + ranked, taxonomy-aware candidate tags.
- :mod:`retrieval.durable`: crash-safe writes (atomic replace, fsynced JSONL appends with
  torn-line repair and resume) shared by ``agent``, ``serve`` and ``evals``.

Imports ``taxonomy`` only (never FastAPI, never a settings object).
"""

from retrieval.build import add_examples, build_index
from retrieval.cache import CachedEmbedder, EmbeddingCache
from retrieval.candidates import (
    Candidate,
    CandidateConfig,
    CandidateGenerator,
    Neighbour,
    Retrieval,
)
from retrieval.durable import (
    append_lines,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    complete_lines,
    fsync_dir,
    resume_keys,
    write_bytes_durable,
)
from retrieval.embedder import (
    DEFAULT_MAX_SEQ_LENGTH,
    Embedder,
    SentenceTransformerEmbedder,
    normalize,
)
from retrieval.errors import (
    EmbedderError,
    ExampleError,
    IndexCorruptError,
    IndexMismatchError,
    IndexStateError,
    NoIndexError,
    RetrievalError,
    StaleGenerationError,
)
from retrieval.examples import (
    Example,
    packaged_examples,
    packaged_examples_path,
    read_examples,
)
from retrieval.hashing_embedder import HashingEmbedder
from retrieval.index import INDEX_KINDS, ExampleIndex, Hit, IndexKind
from retrieval.lexical import LexicalClassifier, LexicalConfig
from retrieval.packaged import default_embedder_dir
from retrieval.store import IndexStore, Manifest
from retrieval.taxonomy_search import TaxonomyIndex, node_text
from retrieval.text import DEFAULT_MAX_CHARS, ProductLike, product_text, text_of

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_SEQ_LENGTH",
    "INDEX_KINDS",
    "CachedEmbedder",
    "Candidate",
    "CandidateConfig",
    "CandidateGenerator",
    "Embedder",
    "EmbedderError",
    "EmbeddingCache",
    "Example",
    "ExampleError",
    "ExampleIndex",
    "HashingEmbedder",
    "Hit",
    "IndexCorruptError",
    "IndexKind",
    "IndexMismatchError",
    "IndexStateError",
    "IndexStore",
    "LexicalClassifier",
    "LexicalConfig",
    "Manifest",
    "Neighbour",
    "NoIndexError",
    "ProductLike",
    "Retrieval",
    "RetrievalError",
    "SentenceTransformerEmbedder",
    "StaleGenerationError",
    "TaxonomyIndex",
    "add_examples",
    "append_lines",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "build_index",
    "complete_lines",
    "default_embedder_dir",
    "fsync_dir",
    "node_text",
    "normalize",
    "packaged_examples",
    "packaged_examples_path",
    "product_text",
    "read_examples",
    "resume_keys",
    "text_of",
    "write_bytes_durable",
]
