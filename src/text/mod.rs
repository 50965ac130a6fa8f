//! Text for the translation model: the subword tokenizer, the parallel corpus and BLEU.

pub mod bleu;
pub mod bpe;
pub mod corpus;
pub mod input;
pub mod marian;
pub mod sentencepiece;
