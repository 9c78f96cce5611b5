#!/usr/bin/env python3
"""Writes configs/data/tinyworld.jsonl: short, simple stories from a small grammar, for the main
job (train a tiny Llama from scratch on 2 CPU cores). The corpus is committed, so nothing is
downloaded at run time; this script only documents and reproduces it (plain Python, no deps).

    python3 tools/make_tiny_corpus.py [--stories 3000] [--seed 7]
"""
import argparse
import json
import os
import random

NAMES = ["Tom", "Lily", "Sam", "Mia", "Ben", "Anna", "Max", "Zoe", "Leo", "Emma", "Jack", "Ruby"]
ANIMALS = ["cat", "dog", "bird", "fox", "rabbit", "duck", "frog", "bear", "mouse", "fish"]
THINGS = ["ball", "kite", "box", "hat", "cake", "book", "boat", "car", "flower", "apple", "shell", "drum"]
COLORS = ["red", "blue", "green", "yellow", "big", "small", "shiny", "soft", "old", "new"]
PLACES = ["park", "garden", "forest", "beach", "river", "house", "school", "hill", "farm", "shop"]
FEELINGS = ["happy", "sad", "tired", "scared", "proud", "excited", "hungry", "sleepy"]
VERBS = ["found", "saw", "lost", "made", "wanted", "liked", "took", "gave away"]


def story(rng):
    a, b = rng.sample(NAMES, 2)
    animal, thing, place = rng.choice(ANIMALS), rng.choice(THINGS), rng.choice(PLACES)
    color, feeling, verb = rng.choice(COLORS), rng.choice(FEELINGS), rng.choice(VERBS)
    lines = [f"Once upon a time, {a} went to the {place}."]
    lines.append(rng.choice([
        f"{a} {verb} a {color} {thing}.",
        f"There {a} met a little {animal}.",
        f"The sun was warm and {a} felt {feeling}.",
    ]))
    lines.append(rng.choice([
        f"The {animal} said, \"Can I play with your {thing}?\"",
        f"{b} came to the {place} too.",
        f"Then it started to rain, and {a} was {feeling}.",
    ]))
    lines.append(rng.choice([
        f"{a} and {b} played with the {thing} all day.",
        f"{a} shared the {thing} with the {animal}.",
        f"They ran home and ate a {color} cake.",
    ]))
    lines.append(rng.choice([
        f"At the end of the day, {a} was {rng.choice(FEELINGS)}.",
        f"The {animal} and {a} became good friends.",
        f"{b} said, \"Thank you, {a}!\" The end.",
    ]))
    return " ".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stories", type=int, default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "configs", "data", "tinyworld.jsonl"))
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        for _ in range(args.stories):
            f.write(json.dumps({"text": story(rng)}) + "\n")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
