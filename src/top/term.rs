//! The terminal side of `node-agent top`, on crossterm: raw mode and the alternate screen (both
//! undone on every way out, a panic included, so an SSH session is never left garbled), drawing a
//! [`Frame`], and a thread that turns key presses and resizes into [`Input`].

use super::model::SortKey;
use super::render::Frame;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::{cursor, execute, queue};
use std::io::{self, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    Quit,
    Sort(SortKey),
    /// Rows to scroll by (negative: up).
    Scroll(isize),
    /// The terminal changed size, or a redraw was asked for (Ctrl-L).
    Redraw,
}

/// Maps one terminal event to an input, if it means one.
pub(crate) fn input_of(ev: &Event, page: isize) -> Option<Input> {
    match ev {
        Event::Resize(_, _) => Some(Input::Redraw),
        Event::Key(k) if k.kind != KeyEventKind::Release => {
            let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
            match k.code {
                KeyCode::Char('c') | KeyCode::Char('d') if ctrl => Some(Input::Quit),
                KeyCode::Char('l') if ctrl => Some(Input::Redraw),
                KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Some(Input::Quit),
                KeyCode::Char(c) => SortKey::from_char(c).map(Input::Sort),
                KeyCode::Up => Some(Input::Scroll(-1)),
                KeyCode::Down => Some(Input::Scroll(1)),
                KeyCode::PageUp => Some(Input::Scroll(-page)),
                KeyCode::PageDown => Some(Input::Scroll(page)),
                KeyCode::Home => Some(Input::Scroll(isize::MIN / 2)),
                KeyCode::End => Some(Input::Scroll(isize::MAX / 2)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// After `q`: the view restores the terminal and ends at once; if it has not within
/// [`QUIT_WITHIN`] (a sample stuck in a read of a hung mount or a frozen cgroup, say), the
/// terminal is restored here and the process ends, so `q` always quits.
pub(crate) fn quit_watchdog(stopped: &AtomicBool) {
    let deadline = std::time::Instant::now() + QUIT_WITHIN;
    while !stopped.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if stopped.load(Ordering::Relaxed) {
        return;
    }
    // Holding stdout's lock keeps the view from drawing over the restored screen.
    let mut out = io::stdout().lock();
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    // Not eprintln!: after a hangup stderr is gone too, and a failed write must not stop the exit.
    let _ = writeln!(
        io::stderr(),
        "node-agent top: the view did not stop within {} s; exiting",
        QUIT_WITHIN.as_secs()
    );
    std::process::exit(0);
}

/// How long `q` may take before the input thread ends the process itself.
const QUIT_WITHIN: Duration = Duration::from_secs(2);

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub(crate) struct Terminal {
    out: Stdout,
    stop: Arc<AtomicBool>,
}

impl Terminal {
    /// Enters raw mode and the alternate screen, and starts the input thread.
    pub(crate) fn enter() -> io::Result<(Terminal, mpsc::UnboundedReceiver<Input>)> {
        terminal::enable_raw_mode()?;
        // From here on, dropping `t` (an error below included) restores the terminal.
        let mut t = Terminal {
            out: io::stdout(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        execute!(t.out, terminal::EnterAlternateScreen, cursor::Hide)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = t.stop.clone();
        std::thread::Builder::new()
            .name("top-input".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Poll with a timeout so the thread notices `stop` and ends.
                    match event::poll(Duration::from_millis(100)) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(_) => {
                            let _ = tx.send(Input::Quit);
                            return;
                        }
                    }
                    let page = terminal::size().map_or(20, |(_, h)| h as isize / 2);
                    match event::read() {
                        Ok(ev) => {
                            let i = input_of(&ev, page);
                            if let Some(i) = i
                                && tx.send(i).is_err()
                            {
                                return;
                            }
                            if i == Some(Input::Quit) {
                                quit_watchdog(&stop);
                                return;
                            }
                        }
                        Err(_) => {
                            let _ = tx.send(Input::Quit);
                            return;
                        }
                    }
                }
            })?;
        Ok((t, rx))
    }

    /// Set once the terminal is restored (for [`quit_watchdog`] on another way out).
    pub(crate) fn stopped(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Columns and rows.
    pub(crate) fn size() -> (usize, usize) {
        terminal::size().map_or((80, 24), |(w, h)| (w as usize, h as usize))
    }

    /// Draws a frame over the previous one, line by line (no full clear, so no flicker).
    pub(crate) fn draw(&mut self, f: &Frame, width: usize) -> io::Result<()> {
        let out = &mut self.out;
        for (i, line) in f.lines.iter().enumerate() {
            queue!(out, cursor::MoveTo(0, i as u16))?;
            if f.header == Some(i) {
                queue!(
                    out,
                    SetAttribute(Attribute::Reverse),
                    Print(format!("{line:<width$}")),
                    SetAttribute(Attribute::Reset)
                )?;
            } else {
                queue!(out, Print(line), Clear(ClearType::UntilNewLine))?;
            }
        }
        queue!(out, Clear(ClearType::FromCursorDown))?;
        out.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = execute!(self.out, cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEvent;

    #[test]
    fn keys() {
        let key = |c| Event::Key(KeyEvent::new(c, KeyModifiers::NONE));
        assert_eq!(input_of(&key(KeyCode::Char('q')), 10), Some(Input::Quit));
        assert_eq!(
            input_of(&key(KeyCode::Char('m')), 10),
            Some(Input::Sort(SortKey::Memory))
        );
        assert_eq!(
            input_of(&key(KeyCode::PageDown), 10),
            Some(Input::Scroll(10))
        );
        assert_eq!(input_of(&key(KeyCode::Char('z')), 10), None);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(input_of(&ctrl_c, 10), Some(Input::Quit));
        assert_eq!(input_of(&Event::Resize(80, 24), 10), Some(Input::Redraw));
    }
}
