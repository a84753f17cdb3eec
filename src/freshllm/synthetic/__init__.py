"""Embedded offline profile: generated text, chat data and news archives."""
