"""A Hugging Face tokenizer for the maze vocabulary, so TransformerLens' text methods work.

Without one, ``TransformerBridge.to_str_tokens`` / ``to_string`` / ``to_tokens`` / ``generate``
on text fail (``'NoneType' object has no attribute 'batch_decode'``). The vocabulary is a
word list (docs/tokens.md), so the tokenizer is a ``tokenizers`` WordLevel model over
``vocab.id_to_token`` (ids unchanged) with a split on whitespace only: text is exactly
:func:`mazesearch.data.tokens.to_text`'s, and no BOS, EOS or other token is ever added (our
sequences carry their own start token). ``<PATH_END>`` is the EOS (``generate`` stops there) and
``<PADDING>`` the pad token.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mazesearch.data.tokens import PAD, PATH_END, Vocab, from_text


class MazeTokenizerFast(PreTrainedTokenizerFast):
    """``PreTrainedTokenizerFast`` that names an unknown token instead of the WordLevel model's
    "Missing [UNK] token" (there is no unknown token: the vocabulary is closed)."""

    maze_vocab: Vocab | None = None

    def __call__(self, text=None, *args, **kwargs):
        if self.maze_vocab is not None:
            for one in [text] if isinstance(text, str) else (text or []):
                if isinstance(one, str):
                    from_text(one, self.maze_vocab)  # ValueError: position and token, if unknown
        return super().__call__(text, *args, **kwargs)


def maze_tokenizer(vocab: Vocab, model_max_length: int | None = None) -> MazeTokenizerFast:
    """The vocabulary as a Hugging Face fast tokenizer (ids are the vocabulary's ids)."""
    word_level = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab.id_to_token)}))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # "(0,1)" stays one word
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    tok = MazeTokenizerFast(tokenizer_object=word_level, eos_token=PATH_END, pad_token=PAD,
                            padding_side="right", **extra)
    tok.maze_vocab = vocab
    if len(tok) != len(vocab):  # registering eos/pad must never add tokens
        raise AssertionError(f"tokenizer has {len(tok)} tokens, the vocabulary {len(vocab)}")
    return tok


def attach_tokenizer(bridge, vocab: Vocab):
    """Give ``bridge`` (a TransformerBridge without tokenizer) the maze tokenizer; returns it.

    The bridge's first tokenizer assignment stores it as is: TL's ``configure_tokenizer`` (run
    on a reassignment) would reload it by name and register a ``<|endoftext|>`` BOS the
    vocabulary lacks. So the BOS/EOS facts it would detect are set here: none is added.
    """
    if bridge.tokenizer is not None:
        raise ValueError("the bridge already has a tokenizer")
    if bridge.cfg.d_vocab != len(vocab):
        raise ValueError(f"the model has d_vocab={bridge.cfg.d_vocab}, the vocabulary {len(vocab)} tokens")
    bridge.tokenizer = maze_tokenizer(vocab, model_max_length=bridge.cfg.n_ctx)
    bridge.cfg.tokenizer_prepends_bos = False
    bridge.cfg.tokenizer_appends_eos = False
    bridge.cfg.default_prepend_bos = False
    return bridge
