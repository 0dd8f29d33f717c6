//! What the two mutexes, [`Mutex`](crate::Mutex) and
//! [`RobustMutex`](crate::RobustMutex), share in their public surface: the
//! four forms of locking, and a guard's access to the protected value.
//! Macros, expanded in each mutex's module.

/// The four ways to lock a mutex built on [`RawLock`](crate::owner::RawLock) (blocking, `try_*`,
/// `*_timeout`, `*_deadline`), which return `$ret`, with the errors of the
/// blocking form given, and `new` and `get_mut`, for a type of fields
/// `raw` and `data`. A lock is taken as a robust one if `$robust`, and
/// the guard made by `$guard` from the mutex and whether its last holder
/// left it clean (did not die holding it).
macro_rules! lock_forms {
    (
        $ret:ty, robust: $robust:expr, guard: |$mutex:ident, $clean:ident| $guard:expr;
        $(#[$lock_errors:meta])*
    ) => {
        #[inline]
        fn lock_with(&self, wait: $crate::owner::Wait) -> $ret {
            let guard = |$mutex, $clean: bool| $guard;
            match self.raw.lock(wait, $robust) {
                Ok($crate::owner::Acquired::Clean) => Ok(guard(self, true)),
                Ok($crate::owner::Acquired::OwnerDied) => Err(LockError::OwnerDied(guard(self, false))),
                Err(fail) => Err(LockError::from_fail(fail)),
            }
        }

        /// The value, through exclusive access to the mutex itself.
        pub fn get_mut(&mut self) -> &mut T {
            self.data.get_mut()
        }

        /// An unlocked mutex holding `value`.
        pub const fn new(value: T) -> Self {
            Self { raw: $crate::owner::RawLock::new(), data: ::std::cell::UnsafeCell::new(value) }
        }

        /// Locks, waiting as long as it takes.
        ///
        /// # Errors
        ///
        $(#[$lock_errors])*
        #[inline]
        pub fn lock(&self) -> $ret {
            self.lock_with($crate::owner::Wait::Until($crate::Deadline::never()))
        }

        /// Locks if nobody holds the lock.
        ///
        /// # Errors
        ///
        /// [`LockError::WouldBlock`] when it is held (also by this thread), and
        /// as for [`lock`](Self::lock).
        pub fn try_lock(&self) -> $ret {
            self.lock_with($crate::owner::Wait::Try)
        }

        /// Locks, waiting at most `timeout` (monotonic clock); a zero timeout
        /// tries once.
        ///
        /// # Errors
        ///
        /// [`LockError::Timeout`] when the lock stayed held, and as for
        /// [`lock`](Self::lock).
        pub fn lock_timeout(&self, timeout: ::std::time::Duration) -> $ret {
            self.lock_with($crate::owner::Wait::Until($crate::Deadline::after(timeout)))
        }

        /// Locks, waiting until `deadline` (monotonic clock) at the latest; a
        /// past deadline tries once.
        ///
        /// # Errors
        ///
        /// As for [`lock_timeout`](Self::lock_timeout).
        pub fn lock_deadline(&self, deadline: ::std::time::Instant) -> $ret {
            self.lock_with($crate::owner::Wait::Until($crate::Deadline::at(deadline)))
        }
    };
}
pub(crate) use lock_forms;

/// `Deref` and `DerefMut` of a mutex guard (`$guard`, with a field `mutex`
/// whose `data` is an `UnsafeCell<T>`) to the value the mutex protects.
/// Expanded in the mutex's module, which allows `unsafe`.
macro_rules! guard_deref {
    ($guard:ident) => {
        impl<T: ::bytemuck::Pod> ::std::ops::Deref for $guard<'_, T> {
            type Target = T;

            fn deref(&self) -> &T {
                // SAFETY: the guard holds the lock, so no one else accesses
                // `data` (every process follows the lock protocol).
                unsafe { &*self.mutex.data.get() }
            }
        }

        impl<T: ::bytemuck::Pod> ::std::ops::DerefMut for $guard<'_, T> {
            fn deref_mut(&mut self) -> &mut T {
                // SAFETY: as in deref; the guard is borrowed mutably, so this
                // is the only reference made through it.
                unsafe { &mut *self.mutex.data.get() }
            }
        }
    };
}
pub(crate) use guard_deref;
