//! The embedded default's voice-over: turns a script into a WAV locally, with no network and no
//! speech model, so `cutx dev` and the tests can complete voice-over jobs without a TTS provider.
//!
//! Promises:
//! - the bytes are a RIFF/WAVE file, 16-bit PCM, mono, 22,050 Hz, that any player opens;
//! - it sounds speech-like, not silent: each syllable of each word is a voiced tone (a fundamental
//!   and its harmonics shaped by the formants of the syllable's vowel) with a soft onset and
//!   release, so there are no clicks; words are separated by short gaps, and `,;:` and `.!?` by
//!   longer pauses;
//! - `duration_ms` is the length of the audio, rounded to the millisecond (within half a sample);
//!   it grows with the text, about 2.5 words a second at speed 1, is at least 300 ms, and a
//!   longer script is cut between two syllables before 10 minutes;
//! - the exact voice name picks the pitch (90–250 Hz), and `speed` (clamped to 0.5–2.0; anything
//!   not a number is 1.0) divides every duration;
//! - the same text, voice and speed give the same bytes.

use std::f64::consts::TAU;
use std::io::Cursor;

/// A rendered voice-over: WAV bytes and how long they play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub wav: Vec<u8>,
    pub duration_ms: u32,
}

/// Speaks `text` in `voice` at `speed` (1.0 is a natural pace).
pub fn speak(text: &str, voice: &str, speed: f32) -> Speech {
    let pace = Pace::of(speed);
    let voice = Voice::named(voice);
    let mut track = Track { samples: Vec::new(), noise: Noise(voice.seed) };
    track.silence(pace.samples(LEAD_IN_MS));
    let tail = pace.samples(TAIL_MS);
    for token in tokens(text) {
        let length = token.length(pace);
        if track.samples.len() + length + tail > MAX_SAMPLES {
            break;
        }
        track.play(token, length, &voice, pace);
    }
    track.silence(tail);
    encode(track.samples)
}

const SAMPLE_RATE: u32 = 22_050;
const MIN_DURATION_MS: u32 = 300;
const MAX_SAMPLES: usize = 10 * 60 * SAMPLE_RATE as usize;

// Durations at speed 1. A typical word (1.4 syllables) and its gap take about 0.4 s.
const LEAD_IN_MS: f64 = 60.0;
const TAIL_MS: f64 = 120.0;
const SYLLABLE_MS: f64 = 180.0;
const UNSTRESSED_SYLLABLE_MS: f64 = 150.0;
const BETWEEN_SYLLABLES_MS: f64 = 25.0;
const BETWEEN_WORDS_MS: f64 = 120.0;
const CLAUSE_PAUSE_MS: f64 = 260.0;
const SENTENCE_PAUSE_MS: f64 = 480.0;
/// The consonant before a vowel: a short burst of noise.
const ONSET_MS: f64 = 30.0;
const ATTACK_MS: f64 = 20.0;
const RELEASE_MS: f64 = 45.0;

// Peak levels as a fraction of full scale: the loudest sample stays well below clipping.
const STRESSED_LEVEL: f64 = 0.6;
const UNSTRESSED_LEVEL: f64 = 0.45;
const ONSET_LEVEL: f64 = 0.12;

/// `speed` clamped to 0.5–2.0.
#[derive(Debug, Clone, Copy)]
struct Pace(f64);

impl Pace {
    fn of(speed: f32) -> Self {
        let speed = if speed.is_finite() { f64::from(speed).clamp(0.5, 2.0) } else { 1.0 };
        Self(speed)
    }

    /// How many samples `ms` (at speed 1) last at this pace.
    fn samples(self, ms: f64) -> usize {
        (ms / self.0 * f64::from(SAMPLE_RATE) / 1000.0).round() as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vowel {
    A,
    E,
    I,
    O,
    U,
    Schwa,
}

impl Vowel {
    const ALL: [Vowel; 6] = [Self::A, Self::E, Self::I, Self::O, Self::U, Self::Schwa];

    fn of_letter(c: char) -> Option<Self> {
        match c.to_ascii_lowercase() {
            'a' => Some(Self::A),
            'e' => Some(Self::E),
            'i' | 'y' => Some(Self::I),
            'o' => Some(Self::O),
            'u' => Some(Self::U),
            _ => None,
        }
    }

    /// Digits and letters outside ASCII are one syllable each; their vowel only needs to vary.
    fn of_other(c: char) -> Self {
        Self::ALL[c as usize % Self::ALL.len()]
    }

    /// The first three formants (Hz) of an adult voice.
    fn formants(self) -> [f64; 3] {
        match self {
            Self::A => [730.0, 1090.0, 2440.0],
            Self::E => [530.0, 1840.0, 2480.0],
            Self::I => [270.0, 2290.0, 3010.0],
            Self::O => [570.0, 840.0, 2410.0],
            Self::U => [300.0, 870.0, 2240.0],
            Self::Schwa => [500.0, 1500.0, 2500.0],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Syllable { vowel: Vowel, onset: bool, stressed: bool, pitch: f64 },
    BetweenSyllables,
    BetweenWords,
    Pause(Pause),
}

/// What punctuation asks for after a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    /// `,;:` and dashes.
    Clause,
    /// `.!?` and an ellipsis; the pitch starts high again after it.
    Sentence,
}

impl Token {
    fn length(self, pace: Pace) -> usize {
        pace.samples(match self {
            Self::Syllable { stressed: true, .. } => SYLLABLE_MS,
            Self::Syllable { stressed: false, .. } => UNSTRESSED_SYLLABLE_MS,
            Self::BetweenSyllables => BETWEEN_SYLLABLES_MS,
            Self::BetweenWords => BETWEEN_WORDS_MS,
            Self::Pause(Pause::Clause) => CLAUSE_PAUSE_MS,
            Self::Pause(Pause::Sentence) => SENTENCE_PAUSE_MS,
        })
    }
}

/// The script as syllables and silences. Each word's first syllable is stressed; the pitch
/// varies a little from word to word and falls through a sentence, as a reading voice does.
fn tokens(text: &str) -> impl Iterator<Item = Token> + '_ {
    let mut in_sentence = 0usize;
    text.split_whitespace().flat_map(move |word| {
        let mut tokens = Vec::new();
        let syllables = syllables(word);
        let word_pitch = 1.0 + (fnv1a(word.as_bytes()) % 1000) as f64 / 1000.0 * 0.1 - 0.05;
        for (i, (vowel, onset)) in syllables.iter().enumerate() {
            if i > 0 {
                tokens.push(Token::BetweenSyllables);
            }
            let declination = 1.0 - 0.012 * in_sentence.min(12) as f64;
            in_sentence += 1;
            tokens.push(Token::Syllable {
                vowel: *vowel,
                onset: *onset,
                stressed: i == 0,
                pitch: word_pitch * declination,
            });
        }
        match pause_after(word) {
            Some(pause) => {
                if pause == Pause::Sentence {
                    in_sentence = 0;
                }
                tokens.push(Token::Pause(pause));
            }
            None if !syllables.is_empty() => tokens.push(Token::BetweenWords),
            None => {}
        }
        tokens
    })
}

/// The syllables of a word as (vowel, preceded by a consonant): one per group of ASCII vowels,
/// one per digit or other letter; a word of consonants only is one schwa.
fn syllables(word: &str) -> Vec<(Vowel, bool)> {
    let mut syllables = Vec::new();
    let mut previous_vowel = false;
    let mut consonant = false;
    let mut letters = false;
    for c in word.chars() {
        if let Some(vowel) = Vowel::of_letter(c) {
            if !previous_vowel {
                syllables.push((vowel, consonant));
            }
            previous_vowel = true;
            consonant = false;
            letters = true;
        } else if c.is_ascii_alphabetic() {
            previous_vowel = false;
            consonant = true;
            letters = true;
        } else if c.is_alphanumeric() {
            syllables.push((Vowel::of_other(c), consonant || c.is_ascii_digit()));
            previous_vowel = false;
            consonant = false;
        } else {
            previous_vowel = false;
        }
    }
    if syllables.is_empty() && letters {
        syllables.push((Vowel::Schwa, true));
    }
    syllables
}

/// The pause a word's punctuation asks for: the longest one of the marks it contains.
fn pause_after(word: &str) -> Option<Pause> {
    if word.contains(['.', '!', '?', '…']) {
        Some(Pause::Sentence)
    } else if word.contains([',', ';', ':', '—', '–']) {
        Some(Pause::Clause)
    } else {
        None
    }
}

const TABLE_LEN: usize = 2048;
/// Harmonics above this are too weak in a voice to matter, and stay far below Nyquist.
const HIGHEST_HARMONIC_HZ: f64 = 4000.0;

/// A voice: its fundamental and one period of each vowel's waveform at that pitch.
struct Voice {
    f0: f64,
    seed: u32,
    tables: [Vec<f64>; 6],
}

impl Voice {
    fn named(name: &str) -> Self {
        let hash = fnv1a(name.as_bytes());
        let f0 = 90.0 + (hash % 161) as f64;
        Self { f0, seed: (hash >> 32) as u32 | 1, tables: Vowel::ALL.map(|vowel| wavetable(f0, vowel)) }
    }

    fn table(&self, vowel: Vowel) -> &[f64] {
        &self.tables[Vowel::ALL.iter().position(|&v| v == vowel).unwrap_or(0)]
    }
}

/// One period of `f0`'s harmonics weighted by the vowel's formants and a falling glottal
/// spectrum, scaled to a peak of 1. Schroeder phases keep the waveform from being one spike.
fn wavetable(f0: f64, vowel: Vowel) -> Vec<f64> {
    let harmonics = (HIGHEST_HARMONIC_HZ / f0) as usize;
    let amplitudes: Vec<f64> = (1..=harmonics)
        .map(|k| {
            let f = k as f64 * f0;
            let resonance: f64 = vowel
                .formants()
                .iter()
                .zip([1.0, 0.6, 0.3])
                .map(|(formant, weight)| weight / (1.0 + ((f - formant) / 90.0).powi(2)))
                .sum();
            (resonance + 0.02) / (k as f64).sqrt()
        })
        .collect();
    let mut table: Vec<f64> = (0..TABLE_LEN)
        .map(|i| {
            let t = i as f64 / TABLE_LEN as f64;
            amplitudes
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    let k = (j + 1) as f64;
                    let phase = std::f64::consts::PI * k * (k - 1.0) / harmonics as f64;
                    a * (TAU * k * t + phase).sin()
                })
                .sum()
        })
        .collect();
    let peak = table.iter().fold(0.0f64, |m, s| m.max(s.abs())).max(f64::EPSILON);
    table.iter_mut().for_each(|s| *s /= peak);
    table
}

/// The samples so far, as fractions of full scale.
struct Track {
    samples: Vec<f64>,
    noise: Noise,
}

impl Track {
    fn silence(&mut self, length: usize) {
        self.samples.resize(self.samples.len() + length, 0.0);
    }

    fn play(&mut self, token: Token, length: usize, voice: &Voice, pace: Pace) {
        let Token::Syllable { vowel, onset, stressed, pitch } = token else {
            self.silence(length);
            return;
        };
        let onset_len = if onset { pace.samples(ONSET_MS).min(length / 3) } else { 0 };
        self.burst(onset_len);
        let level = if stressed { STRESSED_LEVEL } else { UNSTRESSED_LEVEL };
        self.vowel(length - onset_len, voice.table(vowel), voice.f0 * pitch, level, pace);
    }

    /// A consonant: high-passed noise under a sine window, so it starts and ends at zero.
    fn burst(&mut self, length: usize) {
        let mut last = 0.0;
        for i in 0..length {
            let white = self.noise.next();
            let window = (std::f64::consts::PI * i as f64 / length as f64).sin();
            self.samples.push((white - last) * 0.5 * ONSET_LEVEL * window);
            last = white;
        }
    }

    /// A voiced vowel gliding down 7% in pitch, with raised-cosine attack and release.
    fn vowel(&mut self, length: usize, table: &[f64], f0: f64, level: f64, pace: Pace) {
        let attack = pace.samples(ATTACK_MS).min(length / 2).max(1);
        let release = pace.samples(RELEASE_MS).min(length / 2).max(1);
        let mut phase = 0.0f64;
        for i in 0..length {
            let progress = i as f64 / length.max(1) as f64;
            let envelope = if i < attack {
                raised_cosine(i as f64 / attack as f64)
            } else if i >= length - release {
                raised_cosine((length - i) as f64 / release as f64)
            } else {
                1.0
            };
            let position = phase * TABLE_LEN as f64;
            let index = position as usize % TABLE_LEN;
            let fraction = position.fract();
            let sample = table[index] * (1.0 - fraction) + table[(index + 1) % TABLE_LEN] * fraction;
            self.samples.push(sample * envelope * level);
            phase = (phase + f0 * (1.03 - 0.07 * progress) / f64::from(SAMPLE_RATE)).fract();
        }
    }
}

/// 0 at 0, 1 at 1, with zero slope at both ends.
fn raised_cosine(x: f64) -> f64 {
    0.5 - 0.5 * (std::f64::consts::PI * x.clamp(0.0, 1.0)).cos()
}

/// xorshift32: the same seed gives the same consonants.
struct Noise(u32);

impl Noise {
    /// A value in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        f64::from(self.0) / f64::from(u32::MAX) * 2.0 - 1.0
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Pads the track with silence to a whole millisecond (and at least the minimum) and writes it.
fn encode(mut samples: Vec<f64>) -> Speech {
    let rate = u64::from(SAMPLE_RATE);
    let duration_ms = ((samples.len() as u64 * 1000).div_ceil(rate) as u32).max(MIN_DURATION_MS);
    let length = (u64::from(duration_ms) * rate * 2 + 1000) / 2000;
    samples.resize(length as usize, 0.0);

    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = Cursor::new(Vec::new());
    // Writing to a Vec cannot fail, and ten minutes of samples are far below the 4 GiB limit.
    let mut writer = hound::WavWriter::new(&mut wav, spec).expect("wav header in memory");
    let mut pcm = writer.get_i16_writer(samples.len() as u32);
    for sample in samples {
        pcm.write_sample((sample * f64::from(i16::MAX)).round() as i16);
    }
    pcm.flush().expect("wav samples in memory");
    writer.finalize().expect("wav trailer in memory");
    Speech { wav: wav.into_inner(), duration_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "Meet the new cold brew: smooth, bold, and ready in seconds. Try it today!";

    struct Heard {
        spec: hound::WavSpec,
        samples: Vec<i16>,
    }

    impl Heard {
        fn of(speech: &Speech) -> Self {
            let mut reader = hound::WavReader::new(Cursor::new(&speech.wav)).expect("a valid wav");
            let spec = reader.spec();
            let samples = reader.samples::<i16>().collect::<Result<_, _>>().expect("16-bit samples");
            Self { spec, samples }
        }

        fn rms(&self) -> f64 {
            let sum: f64 = self.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
            (sum / self.samples.len() as f64).sqrt()
        }

        fn peak(&self) -> i32 {
            self.samples.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0)
        }

        fn duration_ms(&self) -> f64 {
            self.samples.len() as f64 * 1000.0 / f64::from(self.spec.sample_rate)
        }
    }

    #[test]
    fn a_script_becomes_a_16_bit_mono_22050_hz_wav_as_long_as_it_says() {
        let speech = speak(SCRIPT, "alloy", 1.0);
        let heard = Heard::of(&speech);
        assert_eq!(heard.spec.sample_rate, 22_050);
        assert_eq!(heard.spec.channels, 1);
        assert_eq!(heard.spec.bits_per_sample, 16);
        assert_eq!(heard.spec.sample_format, hound::SampleFormat::Int);
        let half_a_sample_ms = 1000.0 / 22_050.0 / 2.0;
        assert!((heard.duration_ms() - f64::from(speech.duration_ms)).abs() <= half_a_sample_ms);
    }

    #[test]
    fn the_voice_is_clearly_audible_and_never_clips() {
        let heard = Heard::of(&speak(SCRIPT, "alloy", 1.0));
        assert!(heard.rms() > 1500.0, "rms {}", heard.rms());
        assert!(heard.peak() < 30_000, "peak {}", heard.peak());
    }

    #[test]
    fn there_are_pauses_between_the_words() {
        let heard = Heard::of(&speak(SCRIPT, "alloy", 1.0));
        let ten_ms = 220;
        let silent_windows = heard.samples.chunks(ten_ms).filter(|w| w.iter().all(|&s| s.unsigned_abs() < 100)).count();
        let windows = heard.samples.len() / ten_ms;
        assert!(silent_windows * 10 > windows, "{silent_windows} of {windows} windows are silent");
        assert!(silent_windows * 2 < windows, "{silent_windows} of {windows} windows are silent");
    }

    #[test]
    fn fifty_words_take_about_twenty_seconds_at_speed_one() {
        let words = "please buy our really good coffee today ".repeat(50 / 7 + 1);
        let fifty: Vec<&str> = words.split_whitespace().take(50).collect();
        let ms = speak(&fifty.join(" "), "alloy", 1.0).duration_ms;
        assert!((14_000..=28_000).contains(&ms), "{ms} ms");
    }

    #[test]
    fn longer_text_gives_a_longer_file() {
        let short = speak("Fresh coffee.", "alloy", 1.0);
        let long = speak("Fresh coffee, roasted this morning and delivered to your door.", "alloy", 1.0);
        assert!(long.duration_ms > short.duration_ms);
        assert!(long.wav.len() > short.wav.len());
    }

    #[test]
    fn speed_two_roughly_halves_the_duration_and_out_of_range_speeds_are_clamped() {
        let normal = speak(SCRIPT, "alloy", 1.0).duration_ms;
        let fast = speak(SCRIPT, "alloy", 2.0).duration_ms;
        assert!(fast * 10 < normal * 6 && fast * 10 > normal * 4, "{fast} vs {normal}");
        assert_eq!(speak(SCRIPT, "alloy", 9.0), speak(SCRIPT, "alloy", 2.0));
        assert_eq!(speak(SCRIPT, "alloy", 0.1), speak(SCRIPT, "alloy", 0.5));
        assert_eq!(speak(SCRIPT, "alloy", f32::NAN), speak(SCRIPT, "alloy", 1.0));
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        assert_eq!(speak(SCRIPT, "nova", 1.25), speak(SCRIPT, "nova", 1.25));
    }

    #[test]
    fn different_voices_speak_at_different_pitches() {
        let (alloy, nova) = (Voice::named("alloy"), Voice::named("nova"));
        assert_ne!(alloy.f0, nova.f0);
        for voice in ["", "alloy", "nova", "echo", "a much longer voice name"] {
            let f0 = Voice::named(voice).f0;
            assert!((90.0..=250.0).contains(&f0), "{voice}: {f0}");
        }
        let (a, b) = (Heard::of(&speak(SCRIPT, "alloy", 1.0)), Heard::of(&speak(SCRIPT, "nova", 1.0)));
        let differing = a.samples.iter().zip(&b.samples).filter(|(x, y)| x.abs_diff(**y) > 100).count();
        assert!(differing * 4 > a.samples.len().min(b.samples.len()), "{differing} samples differ");
    }

    #[test]
    fn empty_or_punctuation_only_text_still_gives_a_valid_short_file() {
        for text in ["", "   \n", "...", "—"] {
            let speech = speak(text, "alloy", 1.0);
            let heard = Heard::of(&speech);
            assert!((300..=1000).contains(&speech.duration_ms), "{text:?}: {}", speech.duration_ms);
            assert_eq!(heard.spec.sample_rate, 22_050, "{text:?}");
        }
    }

    #[test]
    fn words_without_vowels_digits_and_other_scripts_are_spoken_too() {
        for text in ["nth TV", "2024", "価格 café"] {
            let heard = Heard::of(&speak(text, "alloy", 1.0));
            assert!(heard.rms() > 1000.0, "{text:?}: rms {}", heard.rms());
        }
    }

    #[test]
    fn a_very_long_script_stops_before_ten_minutes() {
        let speech = speak(&"word ".repeat(3000), "alloy", 1.0);
        assert!(speech.duration_ms <= 10 * 60 * 1000, "{}", speech.duration_ms);
        assert!(speech.duration_ms > 9 * 60 * 1000, "{}", speech.duration_ms);
    }
}
