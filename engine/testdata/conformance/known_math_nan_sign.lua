-- Known difference: the sign of a nan that a math function makes from
-- ordinary arguments follows each libm (glibc's log(-1) is -nan, Go's is
-- nan). It shows only in how the nan prints. Arithmetic operators and ^
-- follow the reference.
print(math.log(-1), math.fmod(1, 0), math.cos(1 / 0), math.fmod(0 / 0, 1))
print(math.acos(2), math.sqrt(-1), math.abs(0 / 0))
