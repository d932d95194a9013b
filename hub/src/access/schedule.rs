//! Schedules evaluated on the site's wall clock: weekly intervals, overnight
//! intervals, holidays, DST.
//!
//! [`CompiledSchedule::new`] checks a [`Schedule`] once and lays its
//! intervals out per weekday; [`HolidayCalendar::new`] indexes the site's
//! holidays by date. [`CompiledSchedule::state_at`] then answers "open now?"
//! for a local date-time without allocating. The caller turns the instant
//! into local time with the site's `jiff` time zone
//! (`time_zone.to_datetime(now)`), which is where DST is handled: an
//! interval `07:00-19:00` opens at 07:00 on the clock whatever the UTC
//! offset that day.
//!
//! Rules:
//!
//! - `start < end`: open from `start` to `end` on the interval's days.
//! - `start >= end`: overnight, from `start` on the interval's day to `end`
//!   the next day; `start == end` is 24 hours. The part after midnight
//!   belongs to the day the interval starts on (a Friday-only `22:00-06:00`
//!   is open Saturday 05:00, not Saturday 22:00).
//! - On a holiday, [`OnHolidays`] decides: closed, the holiday ranges
//!   instead of the weekly intervals, or an ordinary day. The rule applies
//!   to intervals *starting* on the holiday; an overnight interval from the
//!   evening before runs to its end.
//! - DST: wall-clock times skipped in spring never occur (an interval
//!   `01:00-04:00` lasts two real hours that night); times repeated in
//!   autumn occur twice (the same interval lasts four real hours).
//!
//! Nothing here does I/O.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use jiff::civil::{Date, DateTime, Time};
use thiserror::Error;

use super::model::{Day, Holiday, OnHolidays, Schedule, TimeRange, WeeklyInterval};

/// Why a schedule or the holiday list is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// An interval names no day, so it would never open.
    #[error("interval {index} has no days")]
    NoDays {
        /// Position of the interval in the schedule.
        index: usize,
    },
    /// Two holidays on the same date.
    #[error("two holidays on {date}")]
    DuplicateHoliday {
        /// The date.
        date: Date,
    },
}

/// A time range checked against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: Time,
    end: Time,
}

impl Range {
    fn from_times(start: Time, end: Time) -> Self {
        Self { start, end }
    }

    /// Runs past midnight into the next day.
    fn overnight(self) -> bool {
        self.start >= self.end
    }

    /// Open at `t` on the day the range starts.
    fn open_same_day(self, t: Time) -> bool {
        if self.overnight() {
            t >= self.start
        } else {
            self.start <= t && t < self.end
        }
    }

    /// Open at `t` on the day after the range starts.
    fn open_next_day(self, t: Time) -> bool {
        self.overnight() && t < self.end
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HolidayMode {
    Closed,
    Normal,
    Ranges(Vec<Range>),
}

/// The site's holidays, by local date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolidayCalendar {
    by_date: HashMap<Date, Arc<str>>,
}

impl HolidayCalendar {
    /// Indexes holidays; two on one date are an error.
    pub fn new(holidays: &[Holiday]) -> Result<Self, ScheduleError> {
        let mut by_date = HashMap::with_capacity(holidays.len());
        for holiday in holidays {
            if by_date
                .insert(holiday.date, Arc::from(holiday.name.as_str()))
                .is_some()
            {
                return Err(ScheduleError::DuplicateHoliday { date: holiday.date });
            }
        }
        Ok(Self { by_date })
    }

    /// The holiday on `date`, by name.
    pub fn get(&self, date: Date) -> Option<&Arc<str>> {
        self.by_date.get(&date)
    }
}

/// Whether a schedule is open at a local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleState {
    /// Open.
    Open,
    /// Closed: no interval covers the time.
    Closed,
    /// Closed because of this holiday; the weekly intervals alone would be
    /// open.
    Holiday(Arc<str>),
}

/// A schedule ready for evaluation: intervals per weekday, the holiday rule,
/// and a label for messages ("Weekdays 07:00-19:00").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSchedule {
    label: Arc<str>,
    days: [Vec<Range>; 7],
    holidays: HolidayMode,
}

impl CompiledSchedule {
    /// Checks and compiles a schedule.
    pub fn new(schedule: &Schedule) -> Result<Self, ScheduleError> {
        let mut days: [Vec<Range>; 7] = Default::default();
        for (index, interval) in schedule.intervals.iter().enumerate() {
            if interval.days.is_empty() {
                return Err(ScheduleError::NoDays { index });
            }
            let range = Range::from_times(interval.start, interval.end);
            for day in &interval.days {
                let ranges = &mut days[day.index()];
                if !ranges.contains(&range) {
                    ranges.push(range);
                }
            }
        }
        let holidays = match &schedule.on_holidays {
            OnHolidays::Closed => HolidayMode::Closed,
            OnHolidays::Normal => HolidayMode::Normal,
            OnHolidays::Intervals(ranges) => HolidayMode::Ranges(
                ranges
                    .iter()
                    .map(|r: &TimeRange| Range::from_times(r.start, r.end))
                    .collect(),
            ),
        };
        Ok(Self {
            label: label(&schedule.name, &schedule.intervals).into(),
            days,
            holidays,
        })
    }

    /// Name and hours for messages: `Weekdays 07:00-19:00` when every
    /// interval has the same hours, `Shifts (Mon-Fri 07:00-19:00, Sat
    /// 09:00-13:00)` otherwise.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The ranges starting on `date` under the holiday rule.
    fn ranges_on<'a>(&'a self, date: Date, holidays: &HolidayCalendar) -> &'a [Range] {
        if holidays.get(date).is_some() {
            match &self.holidays {
                HolidayMode::Closed => return &[],
                HolidayMode::Ranges(ranges) => return ranges,
                HolidayMode::Normal => {}
            }
        }
        &self.days[Day::from_weekday(date.weekday()).index()]
    }

    fn open_with(&self, local: DateTime, holidays: &HolidayCalendar) -> bool {
        let (date, t) = (local.date(), local.time());
        if self
            .ranges_on(date, holidays)
            .iter()
            .any(|r| r.open_same_day(t))
        {
            return true;
        }
        match date.yesterday() {
            Ok(yesterday) => self
                .ranges_on(yesterday, holidays)
                .iter()
                .any(|r| r.open_next_day(t)),
            Err(_) => false,
        }
    }

    /// The state at a local (wall-clock) date-time of the site.
    pub fn state_at(&self, local: DateTime, holidays: &HolidayCalendar) -> ScheduleState {
        if self.open_with(local, holidays) {
            return ScheduleState::Open;
        }
        if self.holidays != HolidayMode::Normal {
            if let Some(name) = holidays.get(local.date()) {
                if self.open_with(local, &HolidayCalendar::default()) {
                    return ScheduleState::Holiday(name.clone());
                }
            }
        }
        ScheduleState::Closed
    }

    /// Whether the schedule is open at a local date-time.
    pub fn is_open(&self, local: DateTime, holidays: &HolidayCalendar) -> bool {
        self.open_with(local, holidays)
    }
}

struct Hm(Time);

impl fmt::Display for Hm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(f, "{:02}:{:02}", t.hour(), t.minute())?;
        if t.second() != 0 {
            write!(f, ":{:02}", t.second())?;
        }
        Ok(())
    }
}

/// `Mon-Fri`, `Mon, Wed`, `Sat-Sun`.
fn day_groups(days: &[Day], out: &mut String) {
    let mut sorted = days.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut i = 0;
    let mut first = true;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].index() == sorted[j].index() + 1 {
            j += 1;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(sorted[i].short_name());
        if j > i {
            out.push('-');
            out.push_str(sorted[j].short_name());
        }
        i = j + 1;
    }
}

fn label(name: &str, intervals: &[WeeklyInterval]) -> String {
    let mut out = String::from(name);
    let Some(first) = intervals.first() else {
        out.push_str(" (never open)");
        return out;
    };
    if intervals
        .iter()
        .all(|i| i.start == first.start && i.end == first.end)
    {
        let _ = write!(out, " {}-{}", Hm(first.start), Hm(first.end));
        return out;
    }
    out.push_str(" (");
    for (n, interval) in intervals.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        day_groups(&interval.days, &mut out);
        let _ = write!(out, " {}-{}", Hm(interval.start), Hm(interval.end));
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};
    use jiff::tz::{TimeZone, TimeZoneDatabase};
    use jiff::Timestamp;

    fn tz(name: &str) -> TimeZone {
        TimeZoneDatabase::bundled().get(name).unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn interval(days: &[Day], start: (i8, i8), end: (i8, i8)) -> WeeklyInterval {
        WeeklyInterval {
            days: days.to_vec(),
            start: time(start.0, start.1, 0, 0),
            end: time(end.0, end.1, 0, 0),
        }
    }

    fn schedule(name: &str, intervals: Vec<WeeklyInterval>) -> Schedule {
        Schedule {
            id: name.into(),
            name: name.into(),
            intervals,
            on_holidays: OnHolidays::Closed,
        }
    }

    fn compiled(intervals: Vec<WeeklyInterval>) -> CompiledSchedule {
        CompiledSchedule::new(&schedule("S", intervals)).unwrap()
    }

    /// Table: (UTC instant, expected open) in a zone.
    fn check_table(s: &CompiledSchedule, zone: &str, table: &[(&str, bool)]) {
        let tz = tz(zone);
        let none = HolidayCalendar::default();
        for &(at, open) in table {
            let local = tz.to_datetime(ts(at));
            assert_eq!(s.is_open(local, &none), open, "{zone} {at} (local {local})");
        }
    }

    #[test]
    fn same_day_interval_bounds() {
        let s = compiled(vec![interval(&Day::WEEKDAYS, (7, 0), (19, 0))]);
        let none = HolidayCalendar::default();
        let at = |d: Date, h, m, sec| s.is_open(d.at(h, m, sec, 0), &none);
        let monday = date(2026, 3, 30);
        assert!(!at(monday, 6, 59, 59));
        assert!(at(monday, 7, 0, 0));
        assert!(at(monday, 18, 59, 59));
        assert!(!at(monday, 19, 0, 0));
        assert!(!at(date(2026, 3, 28), 12, 0, 0), "Saturday");
        assert!(!at(date(2026, 3, 29), 12, 0, 0), "Sunday");
        assert!(at(date(2026, 4, 3), 12, 0, 0), "Friday");
    }

    #[test]
    fn overnight_interval_belongs_to_its_start_day() {
        let s = compiled(vec![interval(&[Day::Fri], (22, 0), (6, 0))]);
        let none = HolidayCalendar::default();
        let friday = date(2026, 4, 3);
        let saturday = date(2026, 4, 4);
        let table = [
            (friday.at(21, 59, 59, 0), false),
            (friday.at(22, 0, 0, 0), true),
            (friday.at(23, 59, 59, 0), true),
            (saturday.at(0, 0, 0, 0), true),
            (saturday.at(5, 59, 59, 0), true),
            (saturday.at(6, 0, 0, 0), false),
            (saturday.at(22, 30, 0, 0), false),
            (date(2026, 4, 3).at(3, 0, 0, 0), false), // Friday early: Thursday has none
        ];
        for (local, open) in table {
            assert_eq!(s.is_open(local, &none), open, "{local}");
        }
    }

    #[test]
    fn equal_start_and_end_is_24_hours() {
        let whole_day = compiled(vec![interval(&[Day::Mon], (0, 0), (0, 0))]);
        let none = HolidayCalendar::default();
        let monday = date(2026, 3, 30);
        assert!(whole_day.is_open(monday.at(0, 0, 0, 0), &none));
        assert!(whole_day.is_open(monday.at(23, 59, 59, 999_999_999), &none));
        assert!(!whole_day.is_open(date(2026, 3, 31).at(0, 0, 0, 0), &none));
        let day_from_noon = compiled(vec![interval(&[Day::Mon], (12, 0), (12, 0))]);
        assert!(day_from_noon.is_open(date(2026, 3, 31).at(11, 59, 0, 0), &none));
        assert!(!day_from_noon.is_open(date(2026, 3, 31).at(12, 0, 0, 0), &none));
        assert!(!day_from_noon.is_open(monday.at(11, 0, 0, 0), &none));
    }

    #[test]
    fn dst_berlin_spring_forward() {
        // 2026-03-29 (Sunday): 02:00 CET becomes 03:00 CEST (UTC+1 -> +2).
        let daily = compiled(vec![interval(&Day::ALL, (7, 0), (19, 0))]);
        check_table(
            &daily,
            "Europe/Berlin",
            &[
                // Saturday, CET: 07:00 = 06:00Z.
                ("2026-03-28T05:59:59Z", false),
                ("2026-03-28T06:00:00Z", true),
                ("2026-03-28T17:59:59Z", true),
                ("2026-03-28T18:00:00Z", false),
                // Sunday, CEST: 07:00 = 05:00Z, 19:00 = 17:00Z.
                ("2026-03-29T04:59:59Z", false),
                ("2026-03-29T05:00:00Z", true),
                ("2026-03-29T16:59:59Z", true),
                ("2026-03-29T17:00:00Z", false),
            ],
        );
        // Weekdays only: Friday before in CET, Monday after in CEST.
        let weekdays = compiled(vec![interval(&Day::WEEKDAYS, (7, 0), (19, 0))]);
        check_table(
            &weekdays,
            "Europe/Berlin",
            &[
                ("2026-03-27T06:00:00Z", true),
                ("2026-03-27T05:59:59Z", false),
                ("2026-03-29T10:00:00Z", false),
                ("2026-03-30T04:59:59Z", false),
                ("2026-03-30T05:00:00Z", true),
                ("2026-03-30T17:00:00Z", false),
            ],
        );
        // 01:00-04:00 spans the skipped hour: two real hours.
        let night = compiled(vec![interval(&[Day::Sun], (1, 0), (4, 0))]);
        check_table(
            &night,
            "Europe/Berlin",
            &[
                ("2026-03-28T23:59:59Z", false), // 00:59:59 CET
                ("2026-03-29T00:00:00Z", true),  // 01:00 CET
                ("2026-03-29T00:59:59Z", true),  // 01:59:59 CET
                ("2026-03-29T01:00:00Z", true),  // 03:00 CEST
                ("2026-03-29T01:59:59Z", true),  // 03:59:59 CEST
                ("2026-03-29T02:00:00Z", false), // 04:00 CEST
            ],
        );
        // An interval inside the skipped hour never opens that night.
        let skipped = compiled(vec![interval(&[Day::Sun], (2, 0), (2, 30))]);
        let tz = tz("Europe/Berlin");
        let none = HolidayCalendar::default();
        let mut t = ts("2026-03-28T23:00:00Z");
        while t < ts("2026-03-29T03:00:00Z") {
            assert!(!skipped.is_open(tz.to_datetime(t), &none), "{t}");
            t = t.checked_add(jiff::SignedDuration::from_mins(1)).unwrap();
        }
        // Overnight 22:00-06:00 from Saturday: 22:00 CET to 06:00 CEST.
        let overnight = compiled(vec![interval(&[Day::Sat], (22, 0), (6, 0))]);
        check_table(
            &overnight,
            "Europe/Berlin",
            &[
                ("2026-03-28T20:59:59Z", false),
                ("2026-03-28T21:00:00Z", true),
                ("2026-03-29T03:59:59Z", true),
                ("2026-03-29T04:00:00Z", false),
            ],
        );
    }

    #[test]
    fn dst_berlin_fall_back() {
        // 2026-10-25 (Sunday): 03:00 CEST becomes 02:00 CET (UTC+2 -> +1).
        let daily = compiled(vec![interval(&Day::ALL, (7, 0), (19, 0))]);
        check_table(
            &daily,
            "Europe/Berlin",
            &[
                ("2026-10-24T04:59:59Z", false),
                ("2026-10-24T05:00:00Z", true),
                ("2026-10-24T17:00:00Z", false),
                ("2026-10-25T05:59:59Z", false),
                ("2026-10-25T06:00:00Z", true),
                ("2026-10-25T17:59:59Z", true),
                ("2026-10-25T18:00:00Z", false),
            ],
        );
        // 01:00-04:00 spans the repeated hour: four real hours.
        let night = compiled(vec![interval(&[Day::Sun], (1, 0), (4, 0))]);
        check_table(
            &night,
            "Europe/Berlin",
            &[
                ("2026-10-24T22:59:59Z", false), // 00:59:59 CEST
                ("2026-10-24T23:00:00Z", true),  // 01:00 CEST
                ("2026-10-25T00:30:00Z", true),  // 02:30 CEST
                ("2026-10-25T01:30:00Z", true),  // 02:30 CET, again
                ("2026-10-25T02:59:59Z", true),  // 03:59:59 CET
                ("2026-10-25T03:00:00Z", false), // 04:00 CET
            ],
        );
        // An interval in the repeated hour opens twice.
        let repeated = compiled(vec![interval(&[Day::Sun], (2, 15), (2, 45))]);
        check_table(
            &repeated,
            "Europe/Berlin",
            &[
                ("2026-10-25T00:10:00Z", false),
                ("2026-10-25T00:20:00Z", true), // 02:20 CEST
                ("2026-10-25T00:50:00Z", false),
                ("2026-10-25T01:20:00Z", true), // 02:20 CET
                ("2026-10-25T01:50:00Z", false),
            ],
        );
        let overnight = compiled(vec![interval(&[Day::Sat], (22, 0), (6, 0))]);
        check_table(
            &overnight,
            "Europe/Berlin",
            &[
                ("2026-10-24T19:59:59Z", false), // 21:59:59 CEST
                ("2026-10-24T20:00:00Z", true),  // 22:00 CEST
                ("2026-10-25T04:59:59Z", true),  // 05:59:59 CET
                ("2026-10-25T05:00:00Z", false), // 06:00 CET
            ],
        );
    }

    #[test]
    fn dst_new_york_both_changes() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (UTC-5 -> -4).
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (UTC-4 -> -5).
        let daily = compiled(vec![interval(&Day::ALL, (7, 0), (19, 0))]);
        check_table(
            &daily,
            "America/New_York",
            &[
                ("2026-03-07T11:59:59Z", false),
                ("2026-03-07T12:00:00Z", true), // 07:00 EST
                ("2026-03-07T23:59:59Z", true),
                ("2026-03-08T00:00:00Z", false), // Sat 19:00 EST
                ("2026-03-08T10:59:59Z", false),
                ("2026-03-08T11:00:00Z", true), // 07:00 EDT
                ("2026-03-08T22:59:59Z", true),
                ("2026-03-08T23:00:00Z", false), // 19:00 EDT
                ("2026-11-01T10:59:59Z", false),
                ("2026-11-01T11:59:59Z", false), // 06:59:59 EST
                ("2026-11-01T12:00:00Z", true),  // 07:00 EST
                ("2026-11-01T23:59:59Z", true),
                ("2026-11-02T00:00:00Z", false), // 19:00 EST
            ],
        );
        let weekdays = compiled(vec![interval(&Day::WEEKDAYS, (7, 0), (19, 0))]);
        check_table(
            &weekdays,
            "America/New_York",
            &[
                ("2026-03-06T12:00:00Z", true),  // Friday 07:00 EST
                ("2026-03-09T10:59:59Z", false), // Monday 06:59:59 EDT
                ("2026-03-09T11:00:00Z", true),  // Monday 07:00 EDT
                ("2026-10-30T11:00:00Z", true),  // Friday 07:00 EDT
                ("2026-10-30T10:59:59Z", false),
                ("2026-11-02T11:59:59Z", false), // Monday 06:59:59 EST
                ("2026-11-02T12:00:00Z", true),
            ],
        );
        let overnight = compiled(vec![interval(&[Day::Sat], (22, 0), (6, 0))]);
        check_table(
            &overnight,
            "America/New_York",
            &[
                ("2026-03-08T02:59:59Z", false), // Sat 21:59:59 EST
                ("2026-03-08T03:00:00Z", true),  // Sat 22:00 EST
                ("2026-03-08T09:59:59Z", true),  // Sun 05:59:59 EDT
                ("2026-03-08T10:00:00Z", false), // Sun 06:00 EDT
                ("2026-11-01T02:00:00Z", true),  // Sat 22:00 EDT
                ("2026-11-01T10:59:59Z", true),  // Sun 05:59:59 EST
                ("2026-11-01T11:00:00Z", false), // Sun 06:00 EST
            ],
        );
        let span = compiled(vec![interval(&[Day::Sun], (1, 30), (3, 30))]);
        check_table(
            &span,
            "America/New_York",
            &[
                ("2026-03-08T06:29:59Z", false),
                ("2026-03-08T06:30:00Z", true),  // 01:30 EST
                ("2026-03-08T07:00:00Z", true),  // 03:00 EDT
                ("2026-03-08T07:30:00Z", false), // 03:30 EDT: one real hour
                ("2026-11-01T05:30:00Z", true),  // 01:30 EDT
                ("2026-11-01T06:30:00Z", true),  // 01:30 EST again
                ("2026-11-01T08:29:59Z", true),  // 03:29:59 EST
                ("2026-11-01T08:30:00Z", false), // three real hours
            ],
        );
    }

    fn christmas() -> HolidayCalendar {
        HolidayCalendar::new(&[Holiday {
            date: date(2026, 12, 25),
            name: "Christmas Day".into(),
        }])
        .unwrap()
    }

    #[test]
    fn holidays_close_or_replace_or_are_ignored() {
        let hol = christmas();
        let friday = date(2026, 12, 25); // a Friday
        let mut s = schedule(
            "Weekdays",
            vec![
                interval(&Day::WEEKDAYS, (7, 0), (19, 0)),
                interval(&[Day::Thu, Day::Fri], (22, 0), (2, 0)),
            ],
        );

        let closed = CompiledSchedule::new(&s).unwrap();
        assert_eq!(
            closed.state_at(friday.at(10, 0, 0, 0), &hol),
            ScheduleState::Holiday("Christmas Day".into())
        );
        // Outside the weekly hours it is plainly closed.
        assert_eq!(
            closed.state_at(friday.at(20, 0, 0, 0), &hol),
            ScheduleState::Closed
        );
        // Thursday's overnight interval runs into the holiday.
        assert_eq!(
            closed.state_at(friday.at(1, 0, 0, 0), &hol),
            ScheduleState::Open
        );
        // The holiday's own overnight interval does not start.
        assert!(!closed.is_open(friday.at(23, 0, 0, 0), &hol));
        assert!(!closed.is_open(date(2026, 12, 26).at(1, 0, 0, 0), &hol));
        // The day after is normal (a Saturday: closed; the Monday: open).
        assert!(closed.is_open(date(2026, 12, 28).at(10, 0, 0, 0), &hol));

        s.on_holidays = OnHolidays::Intervals(vec![TimeRange {
            start: time(10, 0, 0, 0),
            end: time(14, 0, 0, 0),
        }]);
        let short = CompiledSchedule::new(&s).unwrap();
        assert!(!short.is_open(friday.at(9, 59, 0, 0), &hol));
        assert!(short.is_open(friday.at(10, 0, 0, 0), &hol));
        assert_eq!(
            short.state_at(friday.at(15, 0, 0, 0), &hol),
            ScheduleState::Holiday("Christmas Day".into())
        );

        s.on_holidays = OnHolidays::Normal;
        let normal = CompiledSchedule::new(&s).unwrap();
        assert_eq!(
            normal.state_at(friday.at(10, 0, 0, 0), &hol),
            ScheduleState::Open
        );
        assert_eq!(
            normal.state_at(friday.at(20, 0, 0, 0), &hol),
            ScheduleState::Closed
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            CompiledSchedule::new(&schedule("x", vec![interval(&[], (1, 0), (2, 0))])),
            Err(ScheduleError::NoDays { index: 0 })
        );
        let day = Holiday {
            date: date(2026, 1, 1),
            name: "New Year".into(),
        };
        assert_eq!(
            HolidayCalendar::new(&[day.clone(), day]),
            Err(ScheduleError::DuplicateHoliday {
                date: date(2026, 1, 1)
            })
        );
    }

    #[test]
    fn labels_read_well() {
        let cases: Vec<(Vec<WeeklyInterval>, &str)> = vec![
            (
                vec![interval(&Day::WEEKDAYS, (7, 0), (19, 0))],
                "Weekdays 07:00-19:00",
            ),
            (
                vec![
                    interval(&Day::WEEKDAYS, (7, 0), (19, 0)),
                    interval(&[Day::Sat], (9, 0), (13, 0)),
                ],
                "Weekdays (Mon-Fri 07:00-19:00, Sat 09:00-13:00)",
            ),
            (
                vec![interval(
                    &[Day::Wed, Day::Mon, Day::Sat, Day::Sun],
                    (22, 0),
                    (6, 0),
                )],
                "Weekdays 22:00-06:00",
            ),
            (
                vec![
                    interval(&[Day::Wed, Day::Mon, Day::Sat, Day::Sun], (22, 0), (6, 0)),
                    interval(&[Day::Tue], (1, 0), (2, 0)),
                ],
                "Weekdays (Mon, Wed, Sat-Sun 22:00-06:00, Tue 01:00-02:00)",
            ),
            (vec![], "Weekdays (never open)"),
        ];
        for (intervals, expected) in cases {
            let s = CompiledSchedule::new(&schedule("Weekdays", intervals)).unwrap();
            assert_eq!(&**s.label(), expected);
        }
        let mut odd = interval(&[Day::Mon], (7, 0), (8, 0));
        odd.end = time(8, 0, 30, 0);
        let s = CompiledSchedule::new(&schedule("Odd", vec![odd])).unwrap();
        assert_eq!(&**s.label(), "Odd 07:00-08:00:30");
    }
}
