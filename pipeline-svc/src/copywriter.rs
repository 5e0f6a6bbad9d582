//! The embedded default's copywriter for `copy` jobs: fills templates, with no network and no
//! model, so `cutx dev` and the tests can complete copy jobs without a text provider.
//!
//! Promises, for any input:
//! - exactly [`VARIANTS`] distinct variants, each with a non-empty hook, body and CTA;
//! - the tone picks the wording of hooks, bodies and CTAs; the format picks the shape: `short`
//!   bodies fit [`SHORT_BODY_MAX`] characters, `long` bodies run to several sentences, `hook`
//!   puts the message in the hook and keeps the body to one line, `story` tells a before/after;
//! - 3 to 5 hashtags, each `#` and letters or digits, fewer where a platform frowns on them
//!   (3 on LinkedIn, Google and universal);
//! - custom instructions, when they hold any text, become a sentence of every body (clipped
//!   where a format has no room for all of it);
//! - an unspecified or unknown platform, format or tone reads as universal, short, professional;
//! - the same input gives the same variants.

use cutx_proto::pb::{AdPlatform, CopyFormat, CopyInput, CopyTone, CopyVariant};

/// How many variants a copy job gets.
pub const VARIANTS: usize = 3;
/// The longest `short` body, in characters: what Meta shows before "See more".
pub const SHORT_BODY_MAX: usize = 125;

/// Writes [`VARIANTS`] variants of ad copy for `input`.
pub fn write_copy(input: &CopyInput) -> Vec<CopyVariant> {
    // Destructured so that a new field forces a decision about what the templates do with it.
    let CopyInput {
        project_id: _,
        product_id: _,
        platform: platform_code,
        format: format_code,
        tone,
        custom_instructions,
    } = input;
    let platform = AdPlatform::try_from(*platform_code).unwrap_or(AdPlatform::Unspecified);
    let format = CopyFormat::try_from(*format_code).unwrap_or(CopyFormat::Unspecified);
    let voice = Voice::of(CopyTone::try_from(*tone).unwrap_or(CopyTone::Unspecified));
    let note = instruction_sentence(custom_instructions);
    (0..VARIANTS)
        .map(|i| {
            let (hook, body) = compose(format, &voice, note.as_deref(), i);
            CopyVariant { hook, body, cta: voice.ctas[i].to_owned(), hashtags: hashtags(platform, &voice, i) }
        })
        .collect()
}

/// The phrasing of one tone; each array holds one entry per variant.
struct Voice {
    hooks: [&'static str; VARIANTS],
    pitches: [&'static str; VARIANTS],
    ctas: [&'static str; VARIANTS],
    proof: &'static str,
    before: &'static str,
    after: &'static str,
    hashtag: &'static str,
}

impl Voice {
    fn of(tone: CopyTone) -> Self {
        match tone {
            CopyTone::Unspecified | CopyTone::Professional => Self {
                hooks: [
                    "Built for people who measure results.",
                    "Quality you can put on the record.",
                    "The smarter choice, made simple.",
                ],
                pitches: [
                    "Dependable quality, designed to perform day after day.",
                    "Thoughtfully engineered, so you can focus on what matters.",
                    "Proven performance with none of the guesswork.",
                ],
                ctas: ["Learn more", "Request details", "Get started today"],
                proof: "Trusted by customers who expect consistency.",
                before: "Before, every option felt like a compromise.",
                after: "Now the work simply gets done, and done well.",
                hashtag: "#Quality",
            },
            CopyTone::Casual => Self {
                hooks: [
                    "Okay, you need to see this.",
                    "Real talk: this one's a keeper.",
                    "Your new favourite thing just showed up.",
                ],
                pitches: [
                    "Easy to love, easy to use, and honestly kind of fun.",
                    "It just works, so you can get on with your day.",
                    "Made for everyday life, no fuss required.",
                ],
                ctas: ["Check it out", "Grab yours", "Take a look"],
                proof: "Folks who try it tend to keep coming back.",
                before: "I used to settle for whatever was on the shelf.",
                after: "Now I actually look forward to using it.",
                hashtag: "#EverydayFavorites",
            },
            CopyTone::Urgent => Self {
                hooks: ["Last chance: this won't last.", "Stock is running low, fast.", "Ends soon. Don't miss out."],
                pitches: [
                    "Limited stock at this price, and it's moving quickly.",
                    "Once it's gone, it's gone. Secure yours while you can.",
                    "The offer closes soon, so now is the moment.",
                ],
                ctas: ["Buy now", "Claim yours now", "Order before it's gone"],
                proof: "Hundreds have already grabbed theirs.",
                before: "Last time I waited, it sold out before I decided.",
                after: "This time I moved fast, and I'm glad I did.",
                hashtag: "#LimitedTime",
            },
            CopyTone::Luxe => Self {
                hooks: [
                    "Crafted for those who notice the details.",
                    "Quiet luxury, made to last.",
                    "An indulgence you deserve.",
                ],
                pitches: [
                    "Exquisite materials, a refined finish, effortless elegance.",
                    "Designed with rare care for a truly elevated experience.",
                    "Understated, timeless, and unmistakably yours.",
                ],
                ctas: ["Discover the collection", "Experience it", "Indulge today"],
                proof: "Chosen by those who accept nothing ordinary.",
                before: "Once, good enough was where it ended.",
                after: "Now every day carries a touch of the exceptional.",
                hashtag: "#Luxury",
            },
            CopyTone::Playful => Self {
                hooks: [
                    "Warning: may cause spontaneous happy dances.",
                    "Plot twist: your day just got better.",
                    "Psst... your new obsession is here.",
                ],
                pitches: [
                    "Fun to use, easy to love, and impossible to put down.",
                    "A little joy in every moment, zero boring bits.",
                    "Bright idea, happy results, big grins all round.",
                ],
                ctas: ["Join the fun", "Treat yourself", "Let's go"],
                proof: "Smiles reported by basically everyone who tries it.",
                before: "Mornings used to be a grumpy, beige affair.",
                after: "Now they come with a grin and a little sparkle.",
                hashtag: "#GoodVibes",
            },
            CopyTone::Bold => Self {
                hooks: ["Stop settling. Start winning.", "The game just changed.", "Go big or go home."],
                pitches: [
                    "Built to outperform, made to stand out, ready for anything.",
                    "No compromises. No excuses. Just results.",
                    "Power and presence in a league of its own.",
                ],
                ctas: ["Get it now", "Make your move", "Claim it"],
                proof: "The ones who lead already made the switch.",
                before: "Playing it safe kept me exactly where I was.",
                after: "Now I set the pace, and everyone notices.",
                hashtag: "#GameChanger",
            },
        }
    }
}

/// The turn of each variant's story.
const STORY_TURNS: [&str; VARIANTS] =
    ["Then I found this.", "Then a friend told me about this.", "Then I finally gave this a try."];

/// The hook and body of variant `i` in `format`.
fn compose(format: CopyFormat, voice: &Voice, note: Option<&str>, i: usize) -> (String, String) {
    let hook = voice.hooks[i];
    let pitch = voice.pitches[i];
    match format {
        CopyFormat::Unspecified | CopyFormat::Short => {
            let body = match note {
                None => pitch.to_owned(),
                Some(note) => {
                    let both = format!("{pitch} {note}");
                    if both.chars().count() <= SHORT_BODY_MAX { both } else { clip(note, SHORT_BODY_MAX) }
                }
            };
            (hook.to_owned(), body)
        }
        CopyFormat::Long => {
            let second = voice.pitches[(i + 1) % VARIANTS];
            let sentences = [Some(pitch), Some(second), note, Some(voice.proof)];
            (hook.to_owned(), sentences.into_iter().flatten().collect::<Vec<_>>().join(" "))
        }
        CopyFormat::Hook => {
            let body = clip(note.unwrap_or(voice.proof), SHORT_BODY_MAX);
            (format!("{hook} {pitch}"), body)
        }
        CopyFormat::Story => {
            let sentences = [Some(voice.before), Some(STORY_TURNS[i]), Some(pitch), note, Some(voice.after)];
            (hook.to_owned(), sentences.into_iter().flatten().collect::<Vec<_>>().join(" "))
        }
    }
}

/// Custom instructions as one sentence: control characters and runs of whitespace become single
/// spaces, the first letter is capitalised and a full stop is added when no end mark is there.
/// `None` when nothing printable is left.
fn instruction_sentence(raw: &str) -> Option<String> {
    let cleaned: String = raw.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let mut chars = words.join(" ").chars().collect::<Vec<_>>().into_iter();
    let first = chars.next()?;
    let mut sentence: String = first.to_uppercase().chain(chars).collect();
    if !sentence.ends_with(['.', '!', '?']) {
        sentence.push('.');
    }
    Some(sentence)
}

/// `text` cut to at most `max` characters, at a word boundary when one is near, ending in "...".
fn clip(text: &str, max: usize) -> String {
    const ELLIPSIS: &str = "...";
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let room = max - ELLIPSIS.len();
    let head: String = text.chars().take(room).collect();
    let cut = match head.rfind(' ') {
        Some(space) if head[..space].chars().count() >= room / 2 => head[..space].trim_end(),
        _ => head.as_str(),
    };
    format!("{cut}{ELLIPSIS}")
}

/// The tone's tag, then the platform's, rotated per variant so variants differ.
fn hashtags(platform: AdPlatform, voice: &Voice, i: usize) -> Vec<String> {
    let (pool, count): ([&str; 5], usize) = match platform {
        AdPlatform::Meta => (["#ShopNow", "#NewArrivals", "#MustHave", "#InstaFinds", "#TreatYourself"], 4),
        AdPlatform::Tiktok => (["#TikTokMadeMeBuyIt", "#fyp", "#ForYou", "#Viral", "#MustHaves"], 5),
        AdPlatform::Google => (["#ShopOnline", "#NewIn", "#BestSeller", "#TopRated", "#GreatFinds"], 3),
        AdPlatform::Linkedin => (["#Innovation", "#Business", "#Productivity", "#Leadership", "#Growth"], 3),
        AdPlatform::Pinterest => (["#Inspiration", "#PinterestFinds", "#Aesthetic", "#Ideas", "#SaveForLater"], 5),
        AdPlatform::Unspecified | AdPlatform::Universal => {
            (["#NewArrivals", "#ShopNow", "#MustHave", "#Trending", "#Favorites"], 3)
        }
    };
    let rotated = pool.iter().cycle().skip(i).take(count - 1);
    std::iter::once(&voice.hashtag).chain(rotated).map(|tag| (*tag).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Every value of a proto enum, unspecified included: they are numbered from 0 without gaps.
    fn values<E: TryFrom<i32>>() -> impl Iterator<Item = i32> {
        (0..).take_while(|&n| E::try_from(n).is_ok())
    }

    fn input(platform: AdPlatform, format: CopyFormat, tone: CopyTone, instructions: &str) -> CopyInput {
        CopyInput {
            project_id: "prj_1".into(),
            product_id: "prd_1".into(),
            platform: platform as i32,
            format: format as i32,
            tone: tone as i32,
            custom_instructions: instructions.into(),
        }
    }

    fn assert_well_formed(input: &CopyInput, variants: &[CopyVariant]) {
        assert_eq!(variants.len(), VARIANTS, "{input:?}");
        let distinct: HashSet<_> = variants.iter().map(|v| (&v.hook, &v.body, &v.cta)).collect();
        assert_eq!(distinct.len(), VARIANTS, "{input:?}");
        for v in variants {
            assert!(!v.hook.trim().is_empty() && !v.body.trim().is_empty() && !v.cta.trim().is_empty(), "{v:?}");
            assert!((3..=5).contains(&v.hashtags.len()), "{v:?}");
            for tag in &v.hashtags {
                let word = tag.strip_prefix('#').unwrap_or_else(|| panic!("{tag} has no #"));
                assert!(!word.is_empty() && word.chars().all(char::is_alphanumeric), "{tag}");
            }
            if input.platform() == AdPlatform::Linkedin {
                assert!(v.hashtags.len() <= 3, "{v:?}");
            }
            if matches!(input.format(), CopyFormat::Short | CopyFormat::Unspecified | CopyFormat::Hook) {
                assert!(v.body.chars().count() <= SHORT_BODY_MAX, "{v:?}");
            }
        }
    }

    #[test]
    fn every_tone_format_and_platform_gives_three_distinct_well_formed_variants() {
        for platform in values::<AdPlatform>() {
            for format in values::<CopyFormat>() {
                for tone in values::<CopyTone>() {
                    for instructions in ["", "Mention free shipping on orders over $50"] {
                        let input = CopyInput {
                            platform,
                            format,
                            tone,
                            custom_instructions: instructions.into(),
                            ..CopyInput::default()
                        };
                        assert_well_formed(&input, &write_copy(&input));
                    }
                }
            }
        }
    }

    #[test]
    fn short_bodies_fit_125_characters_even_with_long_instructions() {
        let long = "mention the recycled packaging and the lifetime warranty ".repeat(8);
        for tone in values::<CopyTone>() {
            let input = CopyInput {
                format: CopyFormat::Short as i32,
                tone,
                custom_instructions: long.clone(),
                ..Default::default()
            };
            for v in write_copy(&input) {
                assert!(v.body.chars().count() <= SHORT_BODY_MAX, "{}", v.body);
                assert!(v.body.starts_with("Mention the recycled packaging"), "{}", v.body);
            }
        }
    }

    #[test]
    fn custom_instructions_appear_in_every_format() {
        for format in values::<CopyFormat>() {
            let input = CopyInput {
                format,
                custom_instructions: "  mention free\n shipping over $50 ".into(),
                ..Default::default()
            };
            for v in write_copy(&input) {
                assert!(v.body.contains("Mention free shipping over $50."), "{format}: {v:?}");
            }
        }
    }

    #[test]
    fn unspecified_and_unknown_values_read_as_universal_short_professional() {
        let explicit = write_copy(&input(AdPlatform::Universal, CopyFormat::Short, CopyTone::Professional, "x"));
        let unspecified =
            write_copy(&input(AdPlatform::Unspecified, CopyFormat::Unspecified, CopyTone::Unspecified, "x"));
        let unknown =
            CopyInput { platform: 99, format: -1, tone: 42, custom_instructions: "x".into(), ..Default::default() };
        assert_eq!(unspecified, explicit);
        assert_eq!(write_copy(&unknown), explicit);
    }

    #[test]
    fn each_tone_has_its_own_hooks_and_ctas() {
        let by_tone: Vec<Vec<(String, String)>> = values::<CopyTone>()
            .skip(1)
            .map(|tone| {
                let input = CopyInput { tone, ..Default::default() };
                write_copy(&input).into_iter().map(|v| (v.hook, v.cta)).collect()
            })
            .collect();
        let all: HashSet<_> = by_tone.iter().flatten().collect();
        assert_eq!(all.len(), by_tone.len() * VARIANTS);
    }

    #[test]
    fn the_format_shapes_the_copy() {
        let copy = |format| write_copy(&input(AdPlatform::Meta, format, CopyTone::Casual, ""));
        let sentences = |text: &str| text.matches(['.', '!', '?']).count();
        for ((short, long), (hook, story)) in copy(CopyFormat::Short)
            .iter()
            .zip(copy(CopyFormat::Long).iter())
            .zip(copy(CopyFormat::Hook).iter().zip(copy(CopyFormat::Story).iter()))
        {
            assert!(sentences(&long.body) >= 3 && long.body.len() > short.body.len(), "{long:?}");
            assert!(hook.hook.len() > short.hook.len() && !hook.body.contains('\n'), "{hook:?}");
            assert!(story.body.starts_with("I used to") && story.body.contains("Now I"), "{story:?}");
        }
    }

    #[test]
    fn linkedin_gets_three_hashtags_and_tiktok_five() {
        let tags = |platform| write_copy(&input(platform, CopyFormat::Short, CopyTone::Bold, ""))[0].hashtags.len();
        assert_eq!(tags(AdPlatform::Linkedin), 3);
        assert_eq!(tags(AdPlatform::Tiktok), 5);
    }

    #[test]
    fn the_same_input_gives_the_same_variants() {
        let input = input(AdPlatform::Pinterest, CopyFormat::Story, CopyTone::Luxe, "Say it is hand-made");
        assert_eq!(write_copy(&input), write_copy(&input));
    }

    #[test]
    fn clipping_cuts_at_a_word_and_marks_the_cut() {
        assert_eq!(clip("short enough", 20), "short enough");
        assert_eq!(clip("one two three four", 12), "one two...");
        assert_eq!(clip("abcdefghijklmnop", 8), "abcde...");
        assert_eq!(clip("ééééééééé", 6), "ééé...");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_custom_instructions_give_well_formed_variants(
            instructions in "(?s).{0,500}",
            platform in -1..8i32,
            format in -1..6i32,
            tone in -1..8i32,
        ) {
            let input = CopyInput { platform, format, tone, custom_instructions: instructions, ..Default::default() };
            assert_well_formed(&input, &write_copy(&input));
        }
    }
}
